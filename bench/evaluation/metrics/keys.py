"""Metric names as they appear in result records. Use these constants, never string literals."""

PSNR = "psnr"
SSIM = "ssim"
LPIPS = "lpips"  # standard LPIPS (AlexNet, v0.1) only; None when its backbone was not available
ST_LPIPS = "st_lpips"  # shift-tolerant LPIPS (stlpips-pytorch, AlexNet): NOT comparable with published LPIPS
FID = "fid"  # rFID: Inception-v3 pool3, reconstructions vs their originals (see protocol["fid"]["n_images"])
FID_INF = "fid_inf"  # rFID-infinity: FID extrapolated to infinitely many images (fid_infinity, Chong & Forsyth 2020)
FD_DINOV2 = "fd_dinov2"  # Frechet distance of DINOv2 ViT-L/14 features (embedding_metrics; needs --metric-weights)
CMMD = "cmmd"  # MMD of CLIP ViT-L/14@336 embeddings, Gaussian kernel, x1000 (embedding_metrics; needs --metric-weights)
KID = "kid"  # KID from the same features (unbiased MMD^2, cubic kernel), mean over subsets
KID_STD = "kid_std"  # its standard deviation over subsets
UTILIZATION = "utilization"  # fraction of codes used at least once over the evaluation split, in [0, 1]
PERPLEXITY = "perplexity"  # exp(entropy of the code histogram)
DEAD_CODES = "dead_codes"  # codes never used over the evaluation split
ENTROPY_BITS = "entropy_bits"  # entropy of the code histogram in bits, log2(perplexity)
ENTROPY_RATIO = "entropy_ratio"  # entropy_bits / log2 K, in [0, 1]; 1 is uniform use of all K codes

# Every record carries these keys (None when a metric was not computed), and those of any other
# registered metric. Exactly one of LPIPS and ST_LPIPS is set by the evaluator: the one that ran
# (protocol["lpips"]["name"] says which).
RECORD_METRICS = (FID, PSNR, SSIM, LPIPS, ST_LPIPS, KID, KID_STD, UTILIZATION, PERPLEXITY, DEAD_CODES, ENTROPY_BITS,
                  ENTROPY_RATIO)


def group_key(metric: str, group: str) -> str:
    """Per-codebook-group usage keys, e.g. utilization_adj, perplexity_noun."""
    return f"{metric}_{group}"
