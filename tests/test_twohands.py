"""Two hands (InterHandGen): parameter layout, records, guidance, sampling, planner, commands."""

import json

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from hoitool.cli.main import app
from hoitool.geometry.rotations import random_rotations
from hoitool.geometry.transforms import make_transform
from hoitool.hand.mirror import mirror_axis_angle
from hoitool.hand.model import HandParams
from hoitool.twohands.params import from_vectors, knuckle, rotate_reference, to_vectors, transform_params

runner = CliRunner()


def _random_pair(B, seed=0, spread=0.3):
    g = torch.Generator().manual_seed(seed)
    mk = lambda side: HandParams(torch.randn(B, 3, generator=g), spread * torch.randn(B, 45, generator=g),  # noqa: E731
                                 torch.randn(B, 10, generator=g), 0.05 * torch.randn(B, 3, generator=g), side)
    return mk("right"), mk("left")


def _in_right_frame(hr, hl, r, l):
    """Left hand vertices in the right hand's own frame (what the vectors must preserve)."""
    Ti = torch.linalg.inv(hr.frame_from_hand(r))
    vl = hl(l).vertices
    return vl @ Ti[:, :3, :3].transpose(1, 2) + Ti[:, :3, 3][:, None]


def test_vectors_round_trip_keeps_the_pair(right_hand, left_hand):
    r, l = _random_pair(4)
    xa, xb = to_vectors(right_hand, left_hand, r, l)
    r2, l2 = from_vectors(right_hand, left_hand, xa, xb)
    assert torch.allclose(_in_right_frame(right_hand, left_hand, r, l), _in_right_frame(right_hand, left_hand, r2, l2), atol=1e-5)
    # the anchor sits at the reference origin with no rotation
    assert knuckle(right_hand, r2).abs().max() < 1e-6
    assert r2.global_orient.abs().max() < 1e-5
    # articulations and shapes pass through (the left one mirrored)
    assert torch.allclose(xa[:, :45], r.hand_pose) and torch.allclose(xb[:, :45], mirror_axis_angle(l.hand_pose))
    assert torch.allclose(l2.hand_pose, l.hand_pose, atol=1e-6) and torch.allclose(l2.betas, l.betas)


def test_vectors_ignore_where_the_pair_is(right_hand, left_hand):
    """Moving both hands by one rigid motion changes nothing (no object: the anchor's frame)."""
    r, l = _random_pair(5, seed=1)
    g = torch.Generator().manual_seed(3)
    T = make_transform(random_rotations(5, g), torch.randn(5, 3, generator=g))
    xa, xb = to_vectors(right_hand, left_hand, r, l)
    xa2, xb2 = to_vectors(right_hand, left_hand, transform_params(right_hand, r, T), transform_params(left_hand, l, T))
    assert torch.allclose(xa, xa2, atol=1e-5) and torch.allclose(xb, xb2, atol=1e-5)


def test_object_reference_frame_and_its_rotation(right_hand, left_hand):
    """With an object, x_a holds the anchor's pose in the object's frame; rotating the frame moves
    only those 9 numbers, and from_vectors puts the pair where the object frame says."""
    r, l = _random_pair(3, seed=2)
    rTw = make_transform(random_rotations(3, torch.Generator().manual_seed(0)), torch.tensor([[0.1, 0.0, 0.0]] * 3))
    xa, xb = to_vectors(right_hand, left_hand, r, l, rTw)
    r2, l2 = from_vectors(right_hand, left_hand, xa, xb)
    want = transform_params(right_hand, r, rTw)
    assert torch.allclose(right_hand(r2).vertices, right_hand(want).vertices, atol=1e-5)
    assert torch.allclose(left_hand(l2).vertices, left_hand(transform_params(left_hand, l, rTw)).vertices, atol=1e-5)
    Q = random_rotations(3, torch.Generator().manual_seed(1))
    xq = rotate_reference(xa, Q)
    assert torch.allclose(xq[:, :55], xa[:, :55])
    rq, _ = from_vectors(right_hand, left_hand, xq, xb)
    assert torch.allclose(right_hand(rq).vertices, right_hand(r2).vertices @ Q.transpose(1, 2), atol=1e-5)


def test_hand_spheres_lie_inside_the_hand_and_follow_it(right_hand, left_hand):
    """Sphere centres are inside the posed mesh (winding numbers) for plausible poses, and move
    with the hand: translating the parameters translates the centres."""
    from hoitool.hand.spheres import HandSpheres
    from hoitool.metrics.twohands import _inside

    for hand in (right_hand, left_hand):
        sp = HandSpheres(hand)
        p = HandParams.zeros(2, hand.side)
        p.hand_pose[1] = hand_prior_pose(hand)
        c, r = sp(p.global_orient, p.hand_pose, p.betas, p.transl)
        assert (r > 0).all() and r.max() < 0.03
        with torch.no_grad():
            v = hand(p).vertices.double().numpy()
        for b in range(2):
            assert _inside(c[b].double().numpy(), v[b], hand.faces.numpy()).mean() > 0.95
        p.transl[:] = torch.tensor([0.1, -0.2, 0.05])
        c2, _ = sp(p.global_orient, p.hand_pose, p.betas, p.transl)
        assert torch.allclose(c2 - c, torch.tensor([0.1, -0.2, 0.05]).expand_as(c), atol=1e-6)


def hand_prior_pose(hand):
    from hoitool.hand.prior import PosePrior

    return PosePrior.from_hand(hand).sample(1, torch.Generator().manual_seed(0), closure=torch.tensor([[0.6]]))[0]


def test_subset_hand_matches_the_full_model(right_hand, left_hand):
    from hoitool.hand.subset import SubsetHand, even_subset

    for hand, p in zip((right_hand, left_hand), _random_pair(3, seed=4)):
        ids = even_subset(hand, 100)
        assert len(set(ids.tolist())) == 100
        pts, nrm = SubsetHand(hand, ids)(p.global_orient, p.hand_pose, p.betas, p.transl)
        assert torch.allclose(pts, hand(p).vertices[:, ids], atol=1e-6)
        assert torch.allclose(nrm.norm(dim=-1), torch.ones(3, 100), atol=1e-5)


@pytest.mark.parametrize("energy,step", [("spheres", 20.0), ("vertices", 0.2)])
def test_penetration_guidance_separates_overlapping_hands(energy, step, right_hand, left_hand):
    """The energy is 0 for hands far apart, positive when one is pushed into the other, and a few
    guided steps on x_b (normalised by identity stats) lower it and reduce the mesh overlap."""
    from hoitool.metrics.twohands import intersection_volume_cm3
    from hoitool.twohands.guidance import PenetrationGuide
    from hoitool.twohands.params import VectorNormaliser

    guide = PenetrationGuide(right_hand, left_hand, energy=energy)
    norm = VectorNormaliser(torch.zeros(64), torch.ones(64), torch.zeros(64), torch.ones(64))
    r, l = HandParams.zeros(2, "right"), HandParams.zeros(2, "left")
    # left palm facing the right palm, pushed 1 cm into it (row 0) or 10 cm away (row 1)
    n = torch.as_tensor(right_hand.metadata.palm_normal, dtype=torch.float32)
    l.global_orient[:] = torch.tensor([0.0, 0.0, np.pi])  # the mirrored hand turned to face the right one
    xa, xb = to_vectors(right_hand, left_hand, r, l)
    xb[:, 61:] = torch.stack([0.012 * n, 0.10 * n])
    e0 = guide.energy(xa, xb)
    assert e0[1] == 0 and e0[0] > 0
    z = xb.clone()
    for _ in range(20):
        z = z - step * guide.gradient(norm, xa, z, "b")
    e1 = guide.energy(xa, z)
    assert e1[0] < 0.5 * e0[0]
    vol = []
    for x in (xb, z):
        rr, ll = from_vectors(right_hand, left_hand, xa[:1], x[:1])
        with torch.no_grad():
            vol.append(intersection_volume_cm3(right_hand(rr).vertices[0].numpy(), right_hand.faces.numpy(),
                                               left_hand(ll).vertices[0].numpy(), left_hand.faces.numpy()))
    assert vol[1] < vol[0]


def _tiny_model(joint=False, with_object=False):
    from hoitool.twohands.model import TwoHandDiffusion, default_encoder, default_net
    from hoitool.twohands.params import VectorNormaliser

    torch.manual_seed(0)
    enc = default_encoder() if with_object else None
    net = default_net(joint, enc.feature_dim if enc else 0, width=32, token_dim=16)
    m = TwoHandDiffusion(net, enc, VectorNormaliser(torch.zeros(64), 0.1 * torch.ones(64), torch.zeros(64), 0.1 * torch.ones(64)), joint=joint,
                         cond_noise=0.0 if joint else 0.5)
    torch.nn.init.normal_(m.net.out.weight, std=0.05)  # out of its zero init, so outputs depend on inputs
    return m.eval()


@pytest.mark.parametrize("joint", [False, True])
def test_sampling_depends_only_on_seed_and_index(joint, right_hand, left_hand):
    from hoitool.twohands.guidance import PenetrationGuide
    from hoitool.twohands.sample import sample_vectors

    m = _tiny_model(joint)
    guide = PenetrationGuide(right_hand, left_hand)
    kw = dict(steps=4, guidance=0.0 if joint else 0.1, penetration=7.0, guide=guide)
    a, b = sample_vectors(m, 4, seed=3, batch_size=4, **kw)
    a1, b1 = sample_vectors(m, 4, seed=3, batch_size=1, **kw)
    a2, b2 = sample_vectors(m, 2, seed=3, batch_size=2, start=2, **kw)
    # equal up to float rounding (the guidance gradient sums in a different order per batch size)
    assert torch.allclose(a, a1, atol=1e-4) and torch.allclose(b, b1, atol=1e-4)
    assert torch.allclose(a[2:], a2, atol=1e-4) and torch.allclose(b[2:], b2, atol=1e-4)
    c, _ = sample_vectors(m, 4, seed=4, batch_size=4, **kw)
    assert not torch.allclose(a, c)
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


def test_classifier_free_guidance_moves_only_the_relative_pose():
    """With one DDIM step the output is the guided x0 itself: CFG changes the second hand's 9
    relative numbers and nothing else; the anchor stage is never guided."""
    from hoitool.twohands.sample import sample_vectors

    m = _tiny_model()
    kw = dict(steps=1, penetration=0.0, seed=0)
    a0, b0 = sample_vectors(m, 3, guidance=0.0, **kw)
    a1, b1 = sample_vectors(m, 3, guidance=2.0, **kw)
    assert torch.allclose(a0, a1)
    assert torch.allclose(b0[:, :55], b1[:, :55])
    assert not torch.allclose(b0[:, 55:], b1[:, 55:])
    with pytest.raises(ValueError, match="joint"):
        sample_vectors(_tiny_model(joint=True), 2, guidance=0.5, **kw)


def test_distribution_metrics_of_a_set_against_itself(twohand_run, right_hand, left_hand):
    """FHID of the reference against itself is ~0 and precision = recall = 1; against a shifted
    copy (left hands moved 5 cm) FHID grows."""
    from hoitool.twohands.checkpoint import load_feature_model
    from hoitool.twohands.evaluate import distribution_metrics
    from hoitool.twohands.prepare import read_prepared

    fm = load_feature_model(twohand_run["feat"])
    arr = read_prepared(twohand_run["data"])
    xa, xb = torch.as_tensor(arr["xa"]), torch.as_tensor(arr["xb"])
    hands = {"right": right_hand, "left": left_hand}
    same = distribution_metrics(fm, hands, xa, xb, (xa, xb))
    assert same["fhid"] < 1e-3 and same["precision"] == 1.0 and same["recall"] == 1.0
    moved = xb.clone()
    moved[:, 61] += 0.05
    other = distribution_metrics(fm, hands, xa, moved, (xa, xb))
    assert other["fhid"] > same["fhid"] + 1e-3


def _records(n=6, with_object=None):
    recs = []
    g = torch.Generator().manual_seed(7)
    for i in range(n):
        r = {k: v[0].tolist() for k, v in HandParams.zeros(1).numpy().items()}
        r["hand_pose"] = (0.2 * torch.randn(45, generator=g)).tolist()
        left = {"global_orient": [0.0, 0.0, 3.1], "hand_pose": (0.2 * torch.randn(45, generator=g)).tolist(),
                "betas": torch.randn(10, generator=g).tolist(), "transl": [0.01 * i, -0.04, 0.0]}
        d = {"id": f"r{i}", "right": r, "left": left, "interaction": "palms_pressed" if i % 2 else "fingertips"}
        if with_object is not None and i < 3:
            d.update(object_mesh=str(with_object), category="box")
        recs.append(d)
    return recs


def _write(path, recs):
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return path


def test_twohand_manifest_validation(tmp_path):
    from hoitool.errors import InputError
    from hoitool.twohands.records import read_twohand_manifest, write_twohand_manifest

    recs = _records(3)
    got = read_twohand_manifest(_write(tmp_path / "m.jsonl", recs))
    assert [r.id for r in got] == ["r0", "r1", "r2"]
    write_twohand_manifest(tmp_path / "back.jsonl", got)
    again = read_twohand_manifest(tmp_path / "back.jsonl")
    assert np.allclose(again[1].left["hand_pose"], got[1].left["hand_pose"], atol=1e-6)
    bad = [dict(recs[0]), dict(recs[1], left={**recs[1]["left"], "betas": [0.0] * 9}), dict(recs[2], right={**recs[2]["right"], "transl": [0, float("nan"), 0]})]
    del bad[0]["left"]
    for i, expect in enumerate(["needs 'right' and 'left'", "left.betas has 9 values", "right.transl contains NaN"]):
        with pytest.raises(InputError, match=expect):
            read_twohand_manifest(_write(tmp_path / f"bad{i}.jsonl", [bad[i]]))


@pytest.fixture(scope="module")
def twohand_run(tmp_path_factory):
    """A two-hand manifest (some records holding a box) prepared, a tiny model and feature net trained."""
    base = tmp_path_factory.mktemp("twohands")
    box = base / "box.obj"
    trimesh.creation.box((0.2, 0.12, 0.1)).export(box)
    man = _write(base / "pairs.jsonl", _records(10, with_object=box))
    data = base / "data"
    r = runner.invoke(app, ["prepare-data", "--manifest", str(man), "--out", str(data), "-j", "1", "--no-preview"])
    assert r.exit_code == 0, r.output
    run = base / "run"
    r = runner.invoke(app, ["train", "twohands", "--data", str(data), "--out", str(run), "--steps", "6", "--batch-size", "4",
                            "--width", "32", "--token-dim", "16", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    feat = base / "feat"
    r = runner.invoke(app, ["train", "twohand-features", "--data", str(data), "--out", str(feat), "--steps", "3", "--batch-size", "4",
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    return {"base": base, "data": data, "run": run, "feat": feat, "box": box}


def test_prepared_manifest_holds_vectors(twohand_run):
    from hoitool.twohands.prepare import read_prepared

    arr = read_prepared(twohand_run["data"])
    assert arr["xa"].shape == (10, 64) and arr["xb"].shape == (10, 64)
    assert (arr["object"][:3] == 0).all() and (arr["object"][3:] == -1).all()
    assert arr["object_points"].shape == (1, 1024, 3)
    # object points are centred on the box's bounding box centre
    assert np.allclose(arr["object_points"][0].max(0) + arr["object_points"][0].min(0), 0, atol=0.01)
    # no object: the anchor's own frame (identity rotation, origin)
    assert np.allclose(arr["xa"][3:, 55:], [1, 0, 0, 0, 1, 0, 0, 0, 0], atol=1e-5)
    assert sorted(arr["type_names"].tolist()) == ["fingertips", "palms_pressed"]


def test_twohands_generate_and_evaluate(twohand_run, tmp_path):
    out = tmp_path / "pairs"
    r = runner.invoke(app, ["twohands", "--n", "6", "--out", str(out), "--model", str(twohand_run["run"]), "--steps", "3",
                            "--no-sheet", "--seed", "5"])
    assert r.exit_code == 0, r.output
    for i in range(6):
        for f in ("right_hand.obj", "left_hand.obj", "scene.glb"):
            assert (out / f"{i:03d}" / f).is_file()
    z = np.load(out / "samples.npz")
    assert z["xa"].shape == (6, 64) and z["right_hand_pose"].shape == (6, 45) and int(z["seed"]) == 5
    r = runner.invoke(app, ["evaluate", "twohands", str(out), "--reference", str(twohand_run["data"]),
                            "--feature-model", str(twohand_run["feat"])])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "evaluation.json").read_text())
    for k in ("penetration_volume_cm3", "proximity_ratio", "diversity", "fhid", "khid_x1000", "precision", "recall"):
        assert k in ev
    assert 0 <= ev["proximity_ratio"] <= 1 and ev["fhid"] >= 0


def test_twohands_with_an_object(twohand_run, tmp_path):
    out = tmp_path / "held"
    r = runner.invoke(app, ["twohands", "--n", "2", "--out", str(out), "--model", str(twohand_run["run"]), "--steps", "2",
                            "--object", str(twohand_run["box"]), "--no-sheet", "--no-penetration-guidance"])
    assert r.exit_code == 0, r.output
    assert (out / "object.obj").is_file()
    z = np.load(out / "samples.npz")
    assert z["rTo"].shape == (4, 4)
    r = runner.invoke(app, ["evaluate", "twohands", str(out), "--feature-model", str(twohand_run["feat"])])
    assert r.exit_code == 0, r.output
    ev = json.loads((out / "evaluation.json").read_text())
    assert "object_penetration_cm3" in ev and 0 <= ev["object_contact_ratio"] <= 1


def test_twohand_bad_input(twohand_run, tmp_path, tiny_prepared):
    def fails(*args, expect):
        r = runner.invoke(app, [str(a) for a in args])
        assert r.exit_code == 2, r.output
        assert expect in r.output, r.output
        assert not any(tmp_path.glob("out*")), "nothing may be written"

    big = tmp_path / "table.obj"
    trimesh.creation.box((0.7, 0.45, 0.05)).export(big)
    fails("twohands", "--out", tmp_path / "out", "--model", twohand_run["run"], "--object", big, expect="too large for two hands")
    fails("train", "twohands", "--data", tiny_prepared, "--out", tmp_path / "out", expect="holds one-hand data")
    (tmp_path / "empty").mkdir()
    fails("train", "twohands", "--data", tmp_path / "empty", "--out", tmp_path / "out", expect="has no two-hand records")
    fails("twohands", "--out", tmp_path / "out", "--model", twohand_run["feat"], expect="not twohands")
    fails("evaluate", "twohands", tmp_path / "empty", expect="no samples.npz")


def test_planner_pairs_pass_their_gates(right_hand, left_hand):
    """A few planned pairs, checked with the exact measures: overlap and depth within the gates,
    touching (or, for near_contact, apart within the gap)."""
    from hoitool.data.synthetic.twohands import TwoHandConfig, TwoHandPlanner
    from hoitool.metrics.twohands import pair_metrics

    cfg = TwoHandConfig(iterations=40)
    planner = TwoHandPlanner(right_hand, left_hand, cfg)
    for kind in ("palms_pressed", "near_contact"):
        b = planner.plan(kind, 1, seed=0, key="test", max_candidates=8)
        assert b.candidates <= 8 and b.passed >= b.right.batch_size
        if b.right.batch_size == 0:
            continue
        with torch.no_grad():
            m = pair_metrics(right_hand(b.right).vertices.numpy(), right_hand.faces.numpy(),
                             left_hand(b.left).vertices.numpy(), left_hand.faces.numpy())
        assert (m["penetration_volume_cm3"] <= cfg.max_volume_cm3).all()
        assert (m["penetration_depth_cm"] <= 100 * cfg.max_depth_m).all()
        d = m["distance_cm"] / 100
        if kind == "near_contact":
            assert ((d >= cfg.near_gap_m[0]) & (d <= cfg.near_gap_m[1])).all()
        else:
            assert (d <= cfg.contact_m).all()


def test_proximity_pull_brings_apart_hands_closer_and_leaves_close_ones(right_hand, left_hand):
    """The proximity term is 0 for hands within 1.5 cm and pulls hands 10 cm apart together."""
    from hoitool.hand.spheres import HandSpheres, sphere_gap
    from hoitool.twohands.guidance import PenetrationGuide
    from hoitool.twohands.params import VectorNormaliser

    guide = PenetrationGuide(right_hand, left_hand, proximity=1.0)
    plain = PenetrationGuide(right_hand, left_hand)
    norm = VectorNormaliser(torch.zeros(64), torch.ones(64), torch.zeros(64), torch.ones(64))
    r, l = HandParams.zeros(2, "right"), HandParams.zeros(2, "left")
    l.global_orient[:] = torch.tensor([0.0, 0.0, np.pi])
    xa, xb = to_vectors(right_hand, left_hand, r, l)
    n = torch.as_tensor(right_hand.metadata.palm_normal, dtype=torch.float32)
    xb[:, 61:] = torch.stack([0.035 * n, 0.12 * n])  # palms about 1 cm apart / 10 cm apart
    spheres = {s: HandSpheres(h) for s, h in (("right", right_hand), ("left", left_hand))}

    def gap(z):
        rr, ll = from_vectors(right_hand, left_hand, xa, z)
        a = spheres["right"](rr.global_orient, rr.hand_pose, rr.betas, rr.transl)
        b = spheres["left"](ll.global_orient, ll.hand_pose, ll.betas, ll.transl)
        return sphere_gap(a[0], a[1], b[0], b[1])

    g0 = gap(xb)
    assert g0[0] < 0.015 < g0[1]
    e_extra = guide.energy(xa, xb) - plain.energy(xa, xb)
    assert e_extra[0] == 0 and e_extra[1] > 0
    z = xb.clone()
    for _ in range(10):
        z = z - 0.05 * guide.gradient(norm, xa, z, "b")
    g1 = gap(z)
    assert torch.isfinite(z).all()
    assert g1[1] < g0[1] - 0.01
