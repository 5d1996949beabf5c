"""The vqct-official preset (issue 26): resolved on fake dataset trees with the two local folders it needs
(every field asserted), its one-line refusals, `--list`, and a smoke-sized run of it on the CPU through
the command line that ends in records."""
import dataclasses
import json

import pytest

from bench.cli import main as cli
from bench.cli.list import list_everything
from bench.core.errors import UserError
from bench.runs import official_vqct, presets
from bench.runs.config import RunConfig, resolve
from bench.training.gan_schedule import first_gan_batch
from tests.datasets import fake_trees

from .official_fixture import VOCABULARY, write_official_folders

NAME = "vqct-official"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """The folders and fake CUB / COCO / ADE20K trees. The prior goes to the session's cache like every
    other: its key is a hash of the captions and of the model folder's config and weight files, so a cached
    one is this very prior, and a second session skips re-tagging."""
    root = tmp_path_factory.mktemp("official")
    folders = write_official_folders(root)
    trees = {"cub200": fake_trees.cub200(root / "data")[0], "mscoco": fake_trees.mscoco(root / "data")[0],
             "ade20k": fake_trees.ade20k_challenge(root / "data")[0]}
    return folders, trees


def _cfg(env, method="vqct", dataset="cub200", **changes):
    folders, trees = env
    paths = {dataset: str(trees[dataset])} if dataset in trees else {}
    fields = dict(method=method, dataset=dataset, codebook_size="full", preset=NAME, dataset_paths=paths,
                  vqct_captions=str(folders.captions), vqct_clip=str(folders.clip))
    return RunConfig(**{**fields, **changes})


def test_resolved_config_is_the_official_run_field_by_field(env):
    folders, _ = env
    run = resolve(_cfg(env))
    # the prior: the official union corpus and the CLIP folder, K = its whole vocabulary
    assert run.method_options.corpus == folders.corpus
    assert run.method_options.encoder == f"clip:{folders.clip.resolve()}"
    assert run.codebook_size == VOCABULARY
    o = run.method_options  # the quantizer's own options stay the official ones
    assert (o.top_k, o.loss, o.beta, o.edge_weight, o.min_count, o.lemmatize, o.dropout) == \
        (2, "official", 0.25, "count", 10, True, 0.5)
    # the configs' preprocessing (cubtext.py: random crop and flip)
    assert run.dataset_options == {"recipe": "vqct"}
    # the configs' model
    m = run.model
    assert (m.resolution, m.ch, m.ch_mult, m.num_res_blocks, m.attn_resolutions, m.z_channels, m.embed_dim,
            m.dropout) == (256, 128, (1, 1, 2, 2, 4), 2, (16,), 256, 256, 0.0)
    # the training recipe: train_net.py's 2 GPUs x 8, lr 2 x 8 x 4.5e-6, fp32, 500 epochs; the loss config
    t = run.train
    assert (t.batch_size, t.micro_batch, run.accumulation, t.base_lr) == (16, 8, 2, 4.5e-6)
    assert run.lr == pytest.approx(7.2e-5)
    assert (t.disc_start, t.disc_weight, t.codebook_weight, t.perceptual_weight, t.disc_layers) == \
        (10_000, 0.8, 1.0, 1.0, 3)
    assert t.precision == "fp32"
    assert t.disc_start_counts == "optimizer_steps" and first_gan_batch(t.disc_start, t.disc_start_counts) == 5000
    assert t.disc_inputs == "after_update" and t.disc_steps_before_start is True
    # the fake CUB has 4 training images: one step per epoch (ceil(ceil(4 / 2 GPUs) / 8))
    assert (t.epochs, t.steps_per_epoch, t.steps, run.steps) == (500, 1, 500, 500)
    # every field is in the record's config, hence in the run id
    d = run.to_dict()
    assert d["codebook_size"] == VOCABULARY and d["preset"] == NAME and d["steps"] == 500
    assert d["method_options"]["corpus"] == folders.corpus and d["dataset_options"] == {"recipe": "vqct"}
    assert {k: d["train"][k] for k in ("precision", "disc_start_counts", "disc_inputs", "disc_steps_before_start",
                                       "epochs", "steps_per_epoch", "steps", "disc_start", "batch_size",
                                       "micro_batch")} == \
        {"precision": "fp32", "disc_start_counts": "optimizer_steps", "disc_inputs": "after_update",
         "disc_steps_before_start": True, "epochs": 500, "steps_per_epoch": 1, "steps": 500, "disc_start": 10_000,
         "batch_size": 16, "micro_batch": 8}
    json.dumps(d)  # JSON-ready


def test_other_presets_record_what_they_recorded_before(env):
    """The fields vqct-official added are left out of other presets' records at their defaults, so run
    ids written before they existed still name the same runs."""
    d = resolve(RunConfig(method="vqgan", preset="smoke")).to_dict()["train"]
    assert not set(presets.ADDED_FIELDS) & set(d)
    assert set(d) == {f.name for f in dataclasses.fields(presets.TrainPreset)} - set(presets.ADDED_FIELDS)


def test_other_methods_and_datasets_under_the_same_recipe(env):
    """vqgan under vqct-official: no prior options of its own, VQCT's K (compared at equal codebook
    size), the same training fields; COCO and ADE20K take their configs' recipe, photos has none."""
    vqgan = resolve(_cfg(env, method="vqgan", dataset="mscoco"))
    assert vqgan.codebook_size == VOCABULARY
    assert not hasattr(vqgan.method_options, "corpus")
    assert vqgan.dataset_options == {"recipe": "vqct"}
    assert vqgan.train == resolve(_cfg(env, dataset="mscoco")).train
    assert resolve(_cfg(env, dataset="ade20k")).dataset_options == {"recipe": "vqct"}
    photos = resolve(_cfg(env, method="vqgan", dataset="photos"))
    assert photos.dataset_options == {}
    assert photos.train.steps_per_epoch > 1 and photos.steps == 500 * photos.train.steps_per_epoch
    # a K given by hand and --steps replace the preset's; the conversion stays recorded
    given = resolve(_cfg(env, codebook_size=4, steps=7))
    assert (given.codebook_size, given.steps, given.train.epochs, given.train.steps_per_epoch) == (4, 7, 500, 1)


def test_steps_per_epoch_counts_as_the_official_loop_did():
    """Lightning's DDP sampler pads each of the 2 GPUs' shards to ceil(n / 2) and keeps the last partial
    batch of 8: the optimizer steps of one epoch of the real splits."""
    train = presets.preset(NAME).train
    for n, per_epoch in ((5_994, 375), (20_210, 1_264), (82_783, 5_174), (118_287, 7_393), (1, 1), (17, 2)):
        assert official_vqct.steps_per_epoch(n, train) == per_epoch


def _one_line_exit_2(capsys, argv, tmp_path) -> str:
    code = cli.main([*argv, "--no-ray", "--no-progress", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert not (tmp_path / "out" / "runs").exists()
    return err[0]


def test_refusals_name_the_missing_folder_and_where_to_get_it(env, tmp_path, capsys):
    folders, trees = env
    base = ["--methods", "vqct", "--datasets", "cub200", "--dataset-path", f"cub200={trees['cub200']}",
            "--preset", NAME]
    line = _one_line_exit_2(capsys, base + ["--vqct-clip", str(folders.clip)], tmp_path)
    assert "--vqct-captions DIR" in line and "reedscot/cvpr2016" in line and "cocodataset.org" in line
    line = _one_line_exit_2(capsys, base + ["--vqct-captions", str(folders.captions)], tmp_path)
    assert "--vqct-clip DIR" in line and "clip-vit-base-patch32" in line and "save_pretrained" in line
    # folders that are there but do not hold what the preset needs
    (tmp_path / "empty").mkdir()
    line = _one_line_exit_2(capsys, base + ["--vqct-captions", str(tmp_path / "empty"), "--vqct-clip",
                                            str(folders.clip)], tmp_path)
    assert "cub/text_c10" in line and "reedscot/cvpr2016" in line
    line = _one_line_exit_2(capsys, base + ["--vqct-captions", str(folders.captions), "--vqct-clip",
                                            str(tmp_path / "empty")], tmp_path)
    assert "no config.json" in line and "save_pretrained" in line


@pytest.mark.parametrize("missing, named", [("flowers", "flowers/text_c10"), ("coco", "COCO caption JSON")])
def test_a_missing_part_of_the_corpus_is_named(tmp_path, missing, named):
    from tests.codebooks import corpus_fixture

    corpus_fixture.write_union_tree(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / missing)
    with pytest.raises(UserError, match=named) as e:
        official_vqct.corpus_spec(str(tmp_path))
    assert "\n" not in str(e.value) and "cocodataset.org" in str(e.value)


def test_a_coco_folder_of_caption_files_is_read_whole(tmp_path):
    """As the official script reads its coco/ folder: every caption JSON in it."""
    from tests.codebooks import corpus_fixture

    corpus_fixture.write_union_tree(tmp_path)
    (tmp_path / "coco" / "annotations").rename(tmp_path / "coco2")
    (tmp_path / "coco").rmdir()
    (tmp_path / "coco2").rename(tmp_path / "coco")
    assert official_vqct.corpus_spec(str(tmp_path)).endswith(f",coco:{(tmp_path / 'coco').resolve()}")


def test_the_folders_and_prior_options_are_refused_where_they_would_be_ignored(env):
    folders, _ = env
    with pytest.raises(UserError, match="--vqct-captions and --vqct-clip: read only by --preset vqct-official"):
        resolve(RunConfig(method="vqct", preset="smoke", vqct_captions=str(folders.captions),
                          vqct_clip=str(folders.clip)))
    with pytest.raises(UserError, match=r"--option vqct.encoder: the vqct-official preset builds the prior"):
        resolve(_cfg(env, method_options={"encoder": "minilm"}))
    # the folders' own values are accepted: the tables' commands repeat a record's options as --option flags
    run = resolve(_cfg(env))
    again = resolve(_cfg(env, method_options={k: getattr(run.method_options, k) for k in ("corpus", "encoder")}))
    assert again.run_id == run.run_id


def test_list_shows_the_preset_in_one_line(capsys):
    out = list_everything().splitlines()
    line = next(x for x in out if x.startswith(f"  {NAME} "))
    assert line == f"  {NAME:<16} {presets.PRESETS[NAME].description}"
    assert "500 epochs (steps from the training split's size)" in out[out.index(line) + 1]
    assert "\n" not in presets.PRESETS[NAME].description
    paper = presets.PRESETS["paper"].description
    assert "official configuration" not in paper and "not the authors' run" in paper


def test_a_smoke_sized_run_of_the_preset_on_the_cpu_ends_in_records(env, tmp_path, monkeypatch, capsys):
    """The preset with the smoke preset's tiny model, 3 epochs and the GAN from Lightning's global_step 3
    (the discriminator's loss from batch 1, the generator's GAN term from batch 2), everything else as
    resolved: the prior from the two folders, K = its vocabulary (the command line's default under this
    preset), fp32, the discriminator on post-update reconstructions, the CUB recipe. vqct and vqgan finish."""
    official = presets.PRESETS[NAME]
    small = dataclasses.replace(
        official, model=presets.PRESETS["smoke"].model,
        train=dataclasses.replace(official.train, epochs=3, disc_start=3, disc_layers=2, perceptual_weight=0.0,
                                  perceptual_metrics=False, log_every=1, ckpt_every=2, num_workers=0))
    monkeypatch.setitem(presets.PRESETS, NAME, small)
    folders, trees = env
    out = tmp_path / "out"
    code = cli.main(["--methods", "vqct,vqgan", "--datasets", "cub200", "--dataset-path", f"cub200={trees['cub200']}",
                     "--preset", NAME, "--vqct-captions", str(folders.captions), "--vqct-clip", str(folders.clip),
                     "--no-ray", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob("*/record.json"))]
    assert sorted(r["config"]["method"] for r in records) == ["vqct", "vqgan"]
    for r in records:
        c = r["config"]
        assert r["status"] == "finished" and r["steps_done"] == 3
        assert c["codebook_size"] == VOCABULARY and c["dataset_options"] == {"recipe": "vqct"}
        assert (c["train"]["precision"], c["train"]["disc_start_counts"], c["train"]["disc_inputs"],
                c["train"]["epochs"], c["train"]["steps_per_epoch"]) == ("fp32", "optimizer_steps", "after_update", 3, 1)
        assert r["protocol"]["preprocessing"]["recipe"] == "vqct"
        assert {"g_loss", "d_loss"} <= set(r["final_train_logs"])  # the last batch (2) has both GAN terms
    log = [json.loads(x) for x in (out / "runs" / records[0]["run_id"] / "train_log.jsonl").read_text().splitlines()]
    assert ["d_loss" in e for e in log] == [False, True, True] and ["g_loss" in e for e in log] == [False, False, True]
