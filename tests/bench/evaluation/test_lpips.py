"""LPIPS: the shift-tolerant network offline (recorded as st_lpips, never as lpips), the standard
network when its backbone is in the torch hub cache, and the metric's properties."""
import pytest
import torch
import torchvision

from bench.evaluation.metrics import keys
from bench.evaluation.metrics import lpips as lp

from .metric_images import blur, tiles


@pytest.fixture(scope="module")
def images():
    return tiles(12)


@pytest.fixture(scope="module")
def st_net():
    return lp.get_network("alex", prefer="st-lpips")


@pytest.fixture
def hub(tmp_path):
    """An empty torch hub cache, restored afterwards."""
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def _local_alexnet_backbone(checkpoints):
    """A randomly initialised torchvision AlexNet under the file name lpips loads through torch.hub;
    the classifier is stored as broadcast zeros to keep the file small (~10 MB)."""
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    state = torchvision.models.alexnet().state_dict()
    state = {k: (torch.zeros(1).expand(v.shape) if k.startswith("classifier") else v) for k, v in state.items()}
    torch.save(state, checkpoints / lp.BACKBONE_FILES["alex"])


def test_offline_the_shift_tolerant_network_runs_under_its_own_key(hub, images):
    assert not lp.standard_available("alex")
    net = lp.load_network("alex")
    assert net.name == "st-lpips-alex" and net.key == keys.ST_LPIPS and not net.standard
    metrics, entry = lp.compute(images[:2], blur(images[:2], 1.0))
    assert metrics[keys.LPIPS] is None and metrics[keys.ST_LPIPS] > 0
    assert entry["name"] == "st-lpips-alex" and entry["comparable_with_published"] is False
    with pytest.raises(FileNotFoundError):
        lp.load_network("alex", prefer="lpips")


def test_identical_images_give_zero(st_net, images):
    d = lp.distances(images, images, net=st_net)
    assert d.shape == (len(images),) and d.abs().max() < 1e-7


def test_symmetric(st_net, images):
    b = blur(images, 1.0)
    torch.testing.assert_close(lp.distances(images, b, net=st_net), lp.distances(b, images, net=st_net),
                               rtol=1e-5, atol=1e-7)


def test_increases_with_blur(st_net, images):
    means = [float(lp.distances(images, blur(images, s), net=st_net).mean()) for s in (0.5, 1.0, 2.0)]
    assert 0 < means[0] < means[1] < means[2]


def test_per_image_values_do_not_depend_on_batch_size(st_net, images):
    b = blur(images, 1.0)
    ref = lp.distances(images, b, net=st_net, batch_size=64)
    for batch_size in (1, 7):
        torch.testing.assert_close(lp.distances(images, b, net=st_net, batch_size=batch_size), ref,
                                   rtol=1e-5, atol=1e-7)


def test_too_small_images_are_reported_not_crashed(st_net):
    x = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    metrics, entry = lp.compute(x, x, prefer="st-lpips")
    assert metrics == {keys.LPIPS: None, keys.ST_LPIPS: None}
    assert "skipped" in entry and entry["n_images"] == 0
    with pytest.raises(ValueError, match="does not accept"):
        lp.distances(x, x, net=st_net)


def test_uint8_only(st_net, images):
    with pytest.raises(TypeError):
        lp.distances(images.float(), images.float(), net=st_net)


def test_shift_tolerant_weights_really_load(st_net):
    import stlpips_pytorch

    path = f"{stlpips_pytorch.__path__[0]}/{lp.ST_WEIGHTS.format(net='alex')}"
    state = torch.load(path, map_location="cpu")
    assert torch.equal(st_net.module.lin0.model[1].weight, state["lin0.model.1.weight"])


def test_standard_lpips_when_the_backbone_is_in_the_hub_cache(hub, images):
    """The standard path, offline: the logic (resolution order, key, properties) with a random
    backbone in a private hub cache. The real ImageNet backbone is checked in the test below."""
    _local_alexnet_backbone(hub)
    assert lp.standard_available("alex")
    net = lp.load_network("alex")
    assert net.name == "lpips-alex" and net.key == keys.LPIPS and net.standard
    b = blur(images[:4], 1.0)
    d = lp.distances(images[:4], b, net=net)
    assert d.min() > 0 and lp.distances(images[:4], images[:4], net=net).abs().max() < 1e-7
    torch.testing.assert_close(lp.distances(b, images[:4], net=net), d, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(lp.distances(images[:4], b, net=net, batch_size=1), d, rtol=1e-5, atol=1e-7)
    # Forced shift-tolerant still works beside it, and the record key follows the network.
    assert lp.load_network("alex", prefer="st-lpips").key == keys.ST_LPIPS


def test_the_training_loss_uses_the_same_resolution_order(hub, monkeypatch):
    from bench.models import perceptual

    net, name = perceptual.load_perceptual(torch.device("cpu"))
    assert name == "st-lpips-vgg" and not any(p.requires_grad for p in net.parameters())
    # With VGG16 in the hub cache the standard network is chosen (its 528 MB file is not written here:
    # the loader is replaced, the choice is what is tested).
    (hub / lp.BACKBONE_FILES["vgg"]).parent.mkdir(parents=True, exist_ok=True)
    (hub / lp.BACKBONE_FILES["vgg"]).write_bytes(b"placeholder")
    monkeypatch.setattr(lp, "_load_standard", lambda net: torch.nn.Conv2d(1, 1, 1))
    assert perceptual.load_perceptual(torch.device("cpu"))[1] == "lpips-vgg"


@pytest.mark.skipif(not lp.hub_checkpoint(lp.BACKBONE_FILES["alex"]).is_file(),
                    reason="needs torchvision's ImageNet AlexNet (alexnet-owt-7be5be79.pth) in the torch hub cache, "
                           "a download from download.pytorch.org that is not reachable here; the standard path is "
                           "covered with a local random backbone above")
def test_standard_lpips_with_the_real_backbone(images):
    net = lp.load_network("alex", prefer="lpips")
    b = blur(images, 1.0)
    d = lp.distances(images, b, net=net)
    assert d.min() > 0 and lp.distances(images, images, net=net).abs().max() < 1e-7
    assert float(d.mean()) < float(lp.distances(images, blur(images, 2.0), net=net).mean())
