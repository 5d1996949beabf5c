"""Metric names as they appear in result records. Use these constants, never string literals."""

PSNR = "psnr"
SSIM = "ssim"
LPIPS = "lpips"
FID = "fid"
UTILIZATION = "utilization"  # fraction of codes used at least once over the evaluation split, in [0, 1]
PERPLEXITY = "perplexity"  # exp(entropy of the code histogram)
DEAD_CODES = "dead_codes"  # codes never used over the evaluation split

# Every record carries these keys (None when a metric was not computed).
RECORD_METRICS = (FID, PSNR, SSIM, LPIPS, UTILIZATION, PERPLEXITY, DEAD_CODES)


def group_key(metric: str, group: str) -> str:
    """Per-codebook-group usage keys, e.g. utilization_adj, perplexity_noun."""
    return f"{metric}_{group}"
