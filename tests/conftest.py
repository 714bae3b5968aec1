"""Shared test set-up: headless MuJoCo rendering and fast, deterministic defaults."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch CPU thread (deterministic and fair to the other tests), then restore the count."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def crosswalk16_recording(tmp_path_factory):
    """Two 16x16 OccludedCrosswalk episodes of the cautious driver (5 facts; occupancy on a 2x2 grid of 8-pixel
    cells, and each fact's colour), recorded once by `genex record` for the layout and appearance tests."""
    import json

    from genex.cli import main

    rec = tmp_path_factory.mktemp("crosswalk16") / "rec"
    assert main(["record", "--env", "genex/OccludedCrosswalk-v0", "--episodes", "2", "--driver", "cautious",
                 "--env-kwargs", json.dumps({"width": 16, "height": 16}), "--out", str(rec)]) == 0
    return rec
