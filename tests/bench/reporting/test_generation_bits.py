"""The Generation table shows its tokenizer's Bits per image (record["bits_per_image"]) beside Prior
tokens when its tokenizers recorded one, and no such column when none did."""
from bench.core import run_folder
from bench.core.atomic import write_json_atomic
from bench.generation.record import PriorRecord
from bench.reporting import generation_table


def _write(out, bits):
    record = {"run_id": "tok-a", "status": "finished", "error": None,
              "config": {"method": "rvq", "dataset": "photos", "codebook_size": 16, "seed": 0, "preset": "cpu-tiny",
                         "steps": 600},
              "metrics": {"fid": 12.5}, "protocol": {"fid": {"n_images": 252}}, "tokens": 64,
              "indices_per_image": 256, "wall_s": 1.0}
    if bits is not None:
        record["bits_per_image"] = bits
    write_json_atomic(run_folder.run_dir(out, "tok-a") / run_folder.RECORD, record)
    tokenizer = {"run_id": "tok-a", "method": "rvq", "dataset": "photos", "codebook_size": 16, "seed": 0,
                 "preset": "cpu-tiny"}
    rec = PriorRecord("tok-a--cpu-tiny-s0-abc", "finished", tokenizer, {"preset": "cpu-tiny", "seed": 0})
    rec.layout = {"sequence_length": 256}
    rec.metrics.update(gfid=40.0, val_nll=3.25)
    rec.protocol = {"fid": {"generated": 1000}}
    rec.write(out)


def test_bits_per_image_follows_prior_tokens(tmp_path):
    _write(tmp_path, 1024.0)
    text = generation_table.render(generation_table.read(tmp_path), "md")
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert cols[cols.index("Prior tokens") + 1] == "Bits per image"
    row = next(line for line in text.splitlines() if line.startswith("| rvq"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[cols.index("Bits per image")] == "1024" and cells[cols.index("Prior tokens")] == "256"


def test_no_column_for_tokenizers_without_a_recorded_budget(tmp_path):
    _write(tmp_path, None)
    assert "Bits per image" not in generation_table.render(generation_table.read(tmp_path), "md")
