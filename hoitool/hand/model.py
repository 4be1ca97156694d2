"""`HandModel`: MANO through smplx, or the bundled open hand, with one interface.

    hand = HandModel("right")                      # open hand, or MANO if HOITOOL_MANO_DIR is set
    out = hand(HandParams.zeros(4, "right"))       # out.vertices (4, V, 3), out.joints (4, 16, 3),
                                                   # out.keypoints (4, 21, 3), metres
Poses are 45-d axis-angle (15 finger joints, MANO order) with the flat hand at zero
(smplx `flat_hand_mean=True`, `use_pca=False`). `global_orient` rotates about the wrist joint.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import numpy as np
import smplx
import torch
from smplx.utils import Struct

from hoitool.geometry.rotations import axis_angle_to_matrix
from hoitool.geometry.transforms import make_transform
from hoitool.hand.keypoints import keypoints_from_joints
from hoitool.hand.mano_io import load_arrays
from hoitool.hand.metadata import HandMetadata, derive_metadata

NUM_BETAS = 10


@dataclass
class HandParams:
    """A batch of hand parameters of one side. Shapes: global_orient (B, 3) axis-angle,
    hand_pose (B, 45) axis-angle, betas (B, 10), transl (B, 3) metres."""

    global_orient: torch.Tensor
    hand_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    side: str = "right"

    TENSORS = ("global_orient", "hand_pose", "betas", "transl")

    def __post_init__(self):
        if self.side not in ("right", "left"):
            raise ValueError(f"side must be 'right' or 'left', got {self.side!r}")

    @classmethod
    def zeros(cls, batch_size: int, side: str = "right", device=None, dtype=torch.float32) -> "HandParams":
        z = lambda d: torch.zeros(batch_size, d, device=device, dtype=dtype)  # noqa: E731
        return cls(z(3), z(45), z(NUM_BETAS), z(3), side)

    @classmethod
    def from_numpy(cls, d: dict, side: str | None = None) -> "HandParams":
        """From a dict of arrays (B, d) or (d,); side from the dict or the argument."""
        t = {k: torch.as_tensor(np.asarray(d[k], dtype=np.float32)).reshape(-1, n)
             for k, n in zip(cls.TENSORS, (3, 45, NUM_BETAS, 3))}
        s = side or str(np.asarray(d.get("side", "right")).reshape(-1)[0])
        return cls(**t, side=s)

    def numpy(self) -> dict:
        return {k: getattr(self, k).detach().cpu().numpy() for k in self.TENSORS}

    @property
    def batch_size(self) -> int:
        return self.hand_pose.shape[0]

    def _map(self, fn) -> "HandParams":
        return HandParams(*(fn(getattr(self, k)) for k in self.TENSORS), side=self.side)

    def to(self, *args, **kwargs) -> "HandParams":
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "HandParams":
        return self._map(lambda t: t.detach())

    def clone(self) -> "HandParams":
        return self._map(lambda t: t.clone())

    def __getitem__(self, idx) -> "HandParams":
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return self._map(lambda t: t[idx])

    @staticmethod
    def cat(items: list["HandParams"]) -> "HandParams":
        sides = {p.side for p in items}
        if len(sides) != 1:
            raise ValueError("cannot concatenate hand parameters of different sides")
        return HandParams(*(torch.cat([getattr(p, k) for p in items]) for k in HandParams.TENSORS), side=sides.pop())


@dataclass
class HandOutput:
    """vertices (B, V, 3), joints (B, 16, 3) in MANO order, keypoints (B, 21, 3) in OpenPose
    order; metres, in the frame the parameters put the hand in."""

    vertices: torch.Tensor
    joints: torch.Tensor
    keypoints: torch.Tensor


class HandModel(torch.nn.Module):
    """A parametric hand (one side) over `smplx.MANO`.

    Args:
        side: "right" or "left".
        mano_dir: folder with MANO_RIGHT.pkl / MANO_LEFT.pkl; else $HOITOOL_MANO_DIR; else
            the bundled open hand.
    """

    def __init__(self, side: str = "right", mano_dir: str | os.PathLike | None = None, *, arrays: dict | None = None, source: str | None = None):
        super().__init__()
        if arrays is None:
            arrays, source = load_arrays(side, mano_dir)
        self.side = side
        self.mano_dir = mano_dir
        """The MANO folder asked for (None: $HOITOOL_MANO_DIR, else the open hand; or arrays given)."""
        self.source = source or "arrays"
        self.is_mano = self.source.startswith("MANO")
        data = Struct(**{k: np.asarray(v) for k, v in arrays.items()})
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a note about 10 betas
            self.layer = smplx.MANO(
                model_path="", data_struct=data, is_rhand=(side == "right"), use_pca=False,
                flat_hand_mean=True, num_betas=NUM_BETAS, create_global_orient=False,
                create_hand_pose=False, create_betas=False, create_transl=False, batch_size=1,
            )
        if self.is_mano and side == "left":
            _fix_mano_left_shapedirs(self.layer)
        self.register_buffer("faces", torch.as_tensor(np.asarray(arrays["f"], dtype=np.int64)))
        rest_j = (self.layer.J_regressor @ self.layer.v_template).detach().cpu().numpy()
        self.metadata: HandMetadata = derive_metadata(
            self.layer.v_template.cpu().numpy(), arrays["f"], rest_j, arrays["weights"], side
        )
        self.register_buffer("tip_vertices", torch.as_tensor(self.metadata.fingertips, dtype=torch.long))

    @classmethod
    def from_arrays(cls, arrays: dict, side: str, source: str = "arrays") -> "HandModel":
        return cls(side, arrays=arrays, source=source)

    # -- properties -------------------------------------------------------------------------
    @property
    def v_template(self) -> torch.Tensor:
        """(V, 3) rest vertices at zero shape, metres."""
        return self.layer.v_template

    @property
    def num_vertices(self) -> int:
        return self.layer.v_template.shape[0]

    @property
    def device(self) -> torch.device:
        return self.faces.device

    def rest_joints(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 16, 3) joints of the unposed hand for betas (B, 10) (zeros when None)."""
        if betas is None:
            betas = torch.zeros(1, NUM_BETAS, device=self.device, dtype=self.layer.v_template.dtype)
        v = self.layer.v_template + torch.einsum("bl,vcl->bvc", betas, self.layer.shapedirs)
        return torch.einsum("jv,bvc->bjc", self.layer.J_regressor, v)

    def frame_from_hand(self, params: HandParams) -> torch.Tensor:
        """(B, 4, 4) rigid transform taking the hand frame h (the model's own frame, zero
        global rotation and translation) to the frame the parameters put the hand in (oTh).

        smplx rotates about the wrist joint J0: v = R (v_h - J0) + J0 + transl.
        """
        R = axis_angle_to_matrix(params.global_orient)
        J0 = self.rest_joints(params.betas)[:, 0]
        t = J0 + params.transl - (R @ J0[..., None])[..., 0]
        return make_transform(R, t)

    # -- forward ----------------------------------------------------------------------------
    def forward(self, params: HandParams | None = None, *, global_orient=None, hand_pose=None, betas=None, transl=None) -> HandOutput:
        """Pose the hand. Pass a HandParams, or tensors (missing ones default to zero)."""
        if params is not None:
            if params.side != self.side:
                raise ValueError(f"{params.side} hand parameters given to the {self.side} hand model")
            global_orient, hand_pose, betas, transl = params.global_orient, params.hand_pose, params.betas, params.transl
        ref = next(t for t in (hand_pose, global_orient, betas, transl) if t is not None)
        B = ref.shape[0]
        z = lambda d: torch.zeros(B, d, device=ref.device, dtype=ref.dtype)  # noqa: E731
        out = self.layer(
            global_orient=z(3) if global_orient is None else global_orient,
            hand_pose=z(45) if hand_pose is None else hand_pose,
            betas=z(NUM_BETAS) if betas is None else betas,
            transl=z(3) if transl is None else transl,
        )
        kp = keypoints_from_joints(out.joints, out.vertices, self.tip_vertices)
        return HandOutput(out.vertices, out.joints, kp)

    def extra_repr(self) -> str:
        return f"side={self.side}, source={self.source}, vertices={self.num_vertices}"


def transform_params(model: HandModel, params: HandParams, T: torch.Tensor) -> HandParams:
    """The same hand moved by the rigid transforms T (B, 4, 4) (or (4, 4)): new global_orient and
    transl, exact for the model's own wrist joint (smplx rotates about J0, which depends on the
    betas and on the model: moving MANO parameters needs the MANO model)."""
    from hoitool.geometry.rotations import matrix_to_axis_angle

    T = T.to(params.transl).expand(params.batch_size, 4, 4)
    R = T[:, :3, :3] @ axis_angle_to_matrix(params.global_orient)
    J0 = model.rest_joints(params.betas)[:, 0]
    # v' = T (R (v - J0) + J0 + t): rotation R' about J0, translation T_R (J0 + t) + T_t - J0
    transl = (T[:, :3, :3] @ (J0 + params.transl)[..., None])[..., 0] + T[:, :3, 3] - J0
    return HandParams(matrix_to_axis_angle(R), params.hand_pose, params.betas, transl, params.side)


def _fix_mano_left_shapedirs(layer) -> None:
    """The released MANO_LEFT.pkl has the x components of its shape directions with the wrong
    sign, so betas do not mean the same on both sides. MANO's first direction is close to a
    uniform scaling, whose x and y components correlate with the centred template the same
    way; where they disagree, x is flipped. (Untested here: MANO files cannot be shipped.)"""
    sd = layer.shapedirs
    centred = layer.v_template - layer.v_template.mean(0)
    cx = (centred[:, 0] * sd[:, 0, 0]).sum()
    cy = (centred[:, 1] * sd[:, 1, 0]).sum()
    if cx * cy < 0:
        sd[:, 0, :] *= -1


def hand_fingerprint(hand: HandModel) -> str:
    """A short hash of the hand model's arrays (template, blend shapes, joint regressor,
    skinning weights, faces): two hands with the same fingerprint give the same meshes."""
    import hashlib

    h = hashlib.sha256(hand.side.encode())
    layer = hand.layer
    for t in (layer.v_template, layer.shapedirs, layer.posedirs, layer.J_regressor, layer.lbs_weights, hand.faces):
        h.update(np.ascontiguousarray(t.detach().cpu().numpy()).tobytes())
    return h.hexdigest()[:16]
