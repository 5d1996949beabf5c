"""Metrics of the evaluation protocol: PSNR/SSIM (image_quality), code usage (usage), rFID and KID
(fid, with offline weights from fid_weights), LPIPS or shift-tolerant LPIPS (lpips). Record keys are
in `keys`. `python -m bench.metrics ORIG_DIR RECON_DIR` computes them for two folders of images.
Submodules are imported on use: torch-fidelity and the LPIPS packages load only when needed."""
