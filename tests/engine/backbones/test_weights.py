import pickle
import urllib.error

import pytest
import torch

from engine.backbones import weights
from engine.backbones.build import create_model
from engine.backbones.weights import (
    WeightsMismatchError,
    WeightsUnavailableError,
    fetch_weights,
    load_state_dict_file,
)


class _Payload:
    """Unpickling this creates ``marker``: code from the file would have run."""

    def __init__(self, marker) -> None:  # noqa: ANN001
        self.marker = str(marker)

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return (open, (self.marker, "w"))


def test_pickle_payload_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    data = pickle.dumps({"weight": _Payload(marker)})
    pickle.loads(data).pop("weight").close()  # the payload is live: a plain unpickle runs it
    assert marker.exists()
    marker.unlink()
    path = tmp_path / "evil.pth"
    path.write_bytes(data)
    with pytest.raises(WeightsUnavailableError, match="evil.pth"):
        load_state_dict_file(path)
    assert not marker.exists()


def test_local_weights_file_loads_into_torchvision_backbone(tmp_path) -> None:
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(net.state_dict(), path)
    model = create_model("resnet18", num_classes=2, weights_file=path)
    assert torch.equal(model.stages[0][0].weight, net.conv1.weight)


def test_safetensors_weights_file(tmp_path) -> None:
    import torchvision
    from safetensors.torch import save_file

    net = torchvision.models.mobilenet_v3_large(weights=None)
    path = tmp_path / "m.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    model = create_model("mobilenet_v3_large", num_classes=2, weights_file=path)
    assert torch.equal(model.stages[0][0].weight, net.features[0][0].weight)


def test_mismatched_state_dict_is_refused(tmp_path) -> None:
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(WeightsMismatchError, match="do not match"):
        create_model("resnet50", num_classes=2, weights_file=path)


def test_offline_download_error_names_file_and_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights.urllib.request, "urlopen", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        fetch_weights("https://example.invalid/models/resnet18-f37072fd.pth")
    assert "resnet18-f37072fd.pth" in str(info.value) and str(tmp_path) in str(info.value)


def test_download_writes_cache_with_progress_and_checks_hash(tmp_path, monkeypatch) -> None:
    import hashlib
    import io

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    payload = b"x" * 3_000_000
    prefix = hashlib.sha256(payload).hexdigest()[:8]

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(payload))}

    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: Response(payload))
    events = []
    path = fetch_weights(f"https://example.invalid/net-{prefix}.pth", on_event=events.append)
    assert path.read_bytes() == payload
    assert events[-1].done == events[-1].total == len(payload)
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: Response(b"corrupt"))
    with pytest.raises(WeightsUnavailableError, match="hash mismatch"):
        fetch_weights("https://example.invalid/other-deadbeef.pth")
    assert not (tmp_path / "checkpoints" / "other-deadbeef.pth").exists()
