"""Grasp stability in pybullet: how far an object held by a static hand moves under gravity.

Protocol (GraspTTA / ObMan, numbers in the G-HOP notes): the hand is a static concave triangle
mesh (restitution 0), the object a dynamic body of mass 1 made of its convex decomposition
(V-HACD, restitution 0.5), friction 3 for both, gravity 9.8 m/s^2 along the object frame's -z,
35 steps of 1/240 s with 150 solver iterations; the result is the displacement of the object's
centre of mass in centimetres. The body is built about the mesh's centre of mass (uniform
density), not about the mesh file's origin, so where the file puts its origin changes nothing.
A hand that interpenetrates the object pushes it away, so penetration shows up here too.
`displacements_cm` repeats the drop under other gravity directions (e.g. the six axis
directions of `SIX_DIRECTIONS`, as G-HOP's evaluation does).

    sim = GraspSimulator(mesh)                  # decomposes the object once
    sim.displacement_cm(hand_vertices, faces)   # one grasp, both in the object's frame, metres
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from hoitool.errors import require


#: Unit gravity directions +-x, +-y, +-z of the object frame.
SIX_DIRECTIONS = ((1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0), (0.0, 0.0, 1.0), (0.0, 0.0, -1.0))


def centre_of_mass(mesh: trimesh.Trimesh) -> np.ndarray:
    """(3,) centre of mass of a uniform solid (watertight mesh), else of its surface; mesh units."""
    if mesh.is_watertight and abs(mesh.volume) > 1e-12:
        return np.asarray(mesh.center_mass, dtype=np.float64)
    return np.asarray(mesh.triangles_center.T @ mesh.area_faces / max(mesh.area, 1e-12), dtype=np.float64)


@dataclass
class SimulationConfig:
    steps: int = 35
    time_step: float = 1.0 / 240.0
    solver_iterations: int = 150
    friction: float = 3.0
    gravity: tuple = (0.0, 0.0, -9.8)
    object_mass: float = 1.0
    object_restitution: float = 0.5
    hand_restitution: float = 0.0
    vhacd_resolution: int = 100_000
    """Voxels of the convex decomposition (pybullet's default, 1M, took 10 s on a mug; 100k: see README)."""


@contextlib.contextmanager
def _quiet_stdout():
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
        yield
    finally:
        try:  # C stdio buffers: flush them while they still point at /dev/null
            import ctypes

            ctypes.CDLL(None).fflush(None)
        except (OSError, AttributeError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


class GraspSimulator:
    """One pybullet world (DIRECT mode) holding one object; hands are swapped in and out."""

    def __init__(self, mesh: trimesh.Trimesh, cfg: SimulationConfig | None = None):
        with _quiet_stdout():  # pybullet prints its build time on connecting
            self.p = p = require("pybullet", "dev", "simulation displacement")
            self.client = p.connect(p.DIRECT)
        self.cfg = cfg = cfg or SimulationConfig()
        p.setGravity(*cfg.gravity, physicsClientId=self.client)
        p.setPhysicsEngineParameter(fixedTimeStep=cfg.time_step, numSolverIterations=cfg.solver_iterations,
                                    physicsClientId=self.client)
        # the body's frame sits at the centre of mass: pybullet takes the link frame as the inertial one
        self.com = centre_of_mass(mesh)
        centred = mesh.copy()
        centred.apply_translation(-self.com)
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "object.obj", Path(tmp) / "object_vhacd.obj"
            centred.export(src, file_type="obj")
            with _quiet_stdout():  # V-HACD prints its progress from C
                p.vhacd(str(src), str(dst), str(Path(tmp) / "vhacd.log"), resolution=cfg.vhacd_resolution,
                        physicsClientId=self.client)
            if not dst.exists() or dst.stat().st_size == 0:  # V-HACD failed: one convex hull
                centred.convex_hull.export(dst, file_type="obj")
            shape = p.createCollisionShape(p.GEOM_MESH, fileName=str(dst), physicsClientId=self.client)
        self.object = p.createMultiBody(cfg.object_mass, shape, basePosition=self.com.tolist(), physicsClientId=self.client)
        p.changeDynamics(self.object, -1, lateralFriction=cfg.friction, restitution=cfg.object_restitution,
                         physicsClientId=self.client)
        self.start_pos, self.start_orn = p.getBasePositionAndOrientation(self.object, physicsClientId=self.client)

    def displacement_cm(self, hand_vertices: np.ndarray, hand_faces: np.ndarray, gravity=None) -> float:
        """Centre-of-mass displacement (cm) of the object held by the static hand (V, 3) / faces (F, 3).

        Both are in the object's frame, metres; `gravity` (3,) m/s^2 overrides the config's."""
        p, c = self.p, self.client
        p.setGravity(*(self.cfg.gravity if gravity is None else gravity), physicsClientId=c)
        shape = p.createCollisionShape(p.GEOM_MESH, vertices=np.asarray(hand_vertices, dtype=np.float64).tolist(),
                                       indices=np.asarray(hand_faces, dtype=np.int64).ravel().tolist(),
                                       flags=p.GEOM_FORCE_CONCAVE_TRIMESH, physicsClientId=c)
        hand = p.createMultiBody(0, shape, basePosition=[0, 0, 0], physicsClientId=c)
        p.changeDynamics(hand, -1, lateralFriction=self.cfg.friction, restitution=self.cfg.hand_restitution, physicsClientId=c)
        p.resetBasePositionAndOrientation(self.object, self.start_pos, self.start_orn, physicsClientId=c)
        p.resetBaseVelocity(self.object, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        for _ in range(self.cfg.steps):
            p.stepSimulation(physicsClientId=c)
        pos, _ = p.getBasePositionAndOrientation(self.object, physicsClientId=c)
        p.removeBody(hand, physicsClientId=c)
        return float(100 * np.linalg.norm(np.subtract(pos, self.start_pos)))

    def displacements_cm(self, hand_vertices: np.ndarray, hand_faces: np.ndarray,
                         directions=SIX_DIRECTIONS) -> np.ndarray:
        """(D,) displacement (cm) under gravity of the config's magnitude along each unit direction (D, 3)."""
        g = float(np.linalg.norm(self.cfg.gravity))
        return np.array([self.displacement_cm(hand_vertices, hand_faces, gravity=g * np.asarray(d, np.float64))
                         for d in directions])

    def close(self) -> None:
        if self.client is not None:
            self.p.disconnect(physicsClientId=self.client)
            self.client = None

    def __enter__(self) -> "GraspSimulator":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
