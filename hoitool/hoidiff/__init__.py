"""HOIDiffusion's image model: realistic HOI images from rendered geometry (skeleton, normals,
segmentation) and text, each image keeping the 3D labels of the frame it was drawn from.

    model.py     condition encoders (T2I-Adapter style) over a diffusers UNet, the default small model
    sdfolder.py  a local Stable Diffusion 1.x folder (diffusers layout): check, load, and a tiny one for tests
    data.py      render folders as training frames: images, condition images, prompts
    train.py     the training task for hoitool.train.loop (`hoitool train hoidiff`)
    sample.py    DDIM with classifier-free guidance over a render folder (`hoitool synthesize`)
    video.py     anchor-frame self-attention: the frames of one trajectory denoised together
"""
