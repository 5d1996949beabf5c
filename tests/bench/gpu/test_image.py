"""bench/gpu/image.py: the GPU image's package list as data, and the rehearsal venv made from it."""
from bench.gpu import image


def test_the_image_list_reads_with_the_versions_kinds_gives():
    listed = image.read_image()
    assert listed["torch"] == "2.11.0" and listed["torchvision"] == "0.26.0" and listed["transformers"] == "5.17.0"
    assert listed["huggingface-hub"] == "1.33.0"  # names normalised
    assert "tabulate" in listed and listed["tabulate"] is None  # there, version not recorded
    assert "ray" not in listed and "torch-fidelity" not in listed


def test_rehearsal_takes_the_image_versions_of_what_the_project_imports():
    lines = dict(image.rehearsal_requirements("3.12"))
    assert "torch==2.11.0" in lines and "torchvision==0.26.0" in lines and "numpy==2.5.2" in lines
    names = {image.normalize(line.split("=")[0].split(">")[0]) for line in lines}
    assert "ray" not in names and "nltk" not in names and "torch-fidelity" not in names  # not on the image
    assert "jax" not in names  # on the image, but the project does not import it


def test_rehearsal_on_311_takes_the_closest_numpy_and_says_so():
    lines = dict(image.rehearsal_requirements("3.11"))
    assert "numpy>=2.4,<2.5" in lines and "no CPython 3.11 wheel" in lines["numpy>=2.4,<2.5"]
    constraints = image.rehearsal_constraints("3.11")
    assert "torch==2.11.0" in constraints and not any(c.startswith("numpy==") for c in constraints)
    assert "numpy==2.5.2" in image.rehearsal_constraints("3.12")


def test_the_cli_prints_requirements(capsys):
    assert image.main(["rehearsal", "3.11"]) == 0
    assert "torch==2.11.0  # the image's version" in capsys.readouterr().out
    assert image.main(["nonsense"]) == 2
