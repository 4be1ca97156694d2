"""The hand model: MANO through smplx, or the bundled open hand; keypoints, mirroring, the
skeletal distance field and its inverse, pose priors and fitting."""

from hoitool.hand.model import HandModel, HandOutput, HandParams

__all__ = ["HandModel", "HandOutput", "HandParams"]
