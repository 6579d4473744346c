"""Device plumbing: which device, precision, memory format and optimizer a run gets, checked on the CPU by telling
torch it has (or lacks) a GPU; what is put back after lr_find; and, on a real GPU, the CUDA paths themselves."""
import numpy as np
import pytest
import torch
from torch import nn

from kitbox import Learner, Task, TensorLoader
from kitbox.training import device as devices

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; this machine has none")


def conv_net(dropout=0.0):
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(4, 2))


@pytest.fixture
def fake_gpu(monkeypatch):
    """torch believes in a GPU: ``fake_gpu(bf16=..., emulated_bf16=...)`` sets what it supports."""

    def install(bf16=True, emulated_bf16=True, name="NVIDIA T4"):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported",
                            lambda including_emulation=True: bf16 or (including_emulation and emulated_bf16))
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)

    monkeypatch.delenv("LOCAL_RANK", raising=False)
    return install


def test_the_cpu_without_a_gpu_gets_fp32_and_nothing_else(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    setup = devices.choose(conv_net())
    assert setup.device == torch.device("cpu") and setup.precision == "fp32"
    assert not setup.channels_last and not setup.scales_loss and setup.optimizer_options() == {}
    torch.set_num_threads(2)
    assert setup.describe() == "cpu, fp32, 2 threads"
    with pytest.raises(RuntimeError, match="no CUDA GPU.*device='cpu'"):
        devices.choose_device("cuda")


def test_each_torchrun_rank_takes_the_gpu_of_its_local_rank(fake_gpu, monkeypatch):
    fake_gpu()
    assert devices.choose_device() == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")
    assert devices.choose_device() == torch.device("cuda", 3)
    assert devices.choose_device("cuda") == torch.device("cuda", 3)
    assert devices.choose_device("cuda:1") == torch.device("cuda", 1)  # an explicit index wins
    assert devices.choose_device("cpu") == torch.device("cpu")  # forced, though a GPU is there


@pytest.mark.parametrize("bf16,emulated,expected", [(True, True, "bf16"), (False, True, "fp16"), (False, False, "fp16")])
def test_auto_precision_is_bf16_where_native_else_fp16_with_loss_scaling(fake_gpu, bf16, emulated, expected):
    fake_gpu(bf16=bf16, emulated_bf16=emulated)  # a T4 "supports" bf16 only by emulation: fp16 is the fast path
    setup = devices.choose(conv_net())
    assert setup.precision == expected and setup.scales_loss == (expected == "fp16")
    assert setup.optimizer_options() == {"fused": True} and setup.channels_last


def test_explicit_precisions_and_their_refusals(fake_gpu):
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert devices.choose_precision("bf16", cpu) == "bf16" and devices.choose_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        devices.choose_precision("fp16", cpu)
    with pytest.raises(ValueError, match="one of"):
        devices.choose_precision("half", cpu)
    fake_gpu(bf16=False)
    assert devices.choose_precision("fp16", gpu) == "fp16" and devices.choose_precision("fp32", gpu) == "fp32"
    with pytest.raises(ValueError, match="no native bf16"):
        devices.choose_precision("bf16", gpu)


def test_channels_last_defaults_on_for_conv_nets_on_cuda_only(fake_gpu):
    mlp = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    assert not devices.choose(conv_net(), device="cpu").channels_last
    assert devices.choose(conv_net(), device="cpu", channels_last=True).channels_last  # asked for: honoured
    fake_gpu()
    assert devices.choose(conv_net()).channels_last and not devices.choose(mlp).channels_last
    assert not devices.choose(conv_net(), channels_last=False).channels_last


def test_describe_names_the_gpu_precision_and_memory_format(fake_gpu):
    fake_gpu(bf16=False)
    setup = devices.choose(conv_net())
    assert setup.describe() == "cuda:0 NVIDIA T4, fp16 autocast + GradScaler, channels_last"
    setup = devices.DeviceSetup(torch.device("cuda", 1), "bf16", False, compile=True)
    assert setup.describe() == "cuda:1 NVIDIA T4, bf16 autocast, torch.compile"


def test_bf16_autocast_on_the_cpu_computes_in_bf16_and_fp32_does_not():
    layer, x = nn.Linear(4, 2), torch.randn(3, 4)
    with devices.DeviceSetup(torch.device("cpu"), "bf16", False).autocast():
        assert layer(x).dtype == torch.bfloat16
    with devices.DeviceSetup(torch.device("cpu"), "fp32", False).autocast():
        assert layer(x).dtype == torch.float32


def test_a_learner_on_the_cpu_keeps_todays_setup():
    learn = Learner(conv_net(), [], task=Task("multiclass", n_out=2), progress=False, device="cpu")
    assert learn.device == torch.device("cpu") and learn.device_setup.precision == "fp32"
    assert not learn.scaler.is_enabled() and not learn.opt.defaults.get("fused")
    assert learn.model[0].weight.is_contiguous()  # no channels_last on the CPU


def test_restored_afterwards_puts_back_weights_optimizer_scaler_and_random_states():
    model = nn.Linear(3, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)  # enabled: its scale is state to restore
    before = [p.detach().clone() for p in model.parameters()]
    with devices.restored_afterwards(model, opt, scaler):
        scaler.scale(model(torch.randn(4, 3)).sum()).backward()
        model.weight.grad[0, 0] = float("inf")  # an overflow: the scaler skips the step and halves its scale
        scaler.step(opt)
        scaler.update()
        model(torch.randn(4, 3)).sum().backward()
        opt.step()
        np.random.rand(3)
        assert scaler.get_scale() == 512.0 and opt.state
    assert scaler.get_scale() == 1024.0 and not opt.state
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    draws = (np.random.rand(), torch.rand(1).item())
    devices.seed_everything(0)
    state = devices.rng_state()
    reference = (np.random.rand(), torch.rand(1).item())
    devices.set_rng_state(state)
    assert (np.random.rand(), torch.rand(1).item()) == reference and draws != reference


def test_compile_with_a_working_backend_gives_the_models_outputs():
    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1)), torch.randn(5, 4)
    compiled = devices.CompiledModel(model, backend="eager")
    torch.testing.assert_close(compiled(x), model(x))
    assert compiled.compiled_forward is not None and compiled.checked
    assert list(compiled.parameters()) == list(model.parameters())  # no second copy of the weights


def test_compile_failing_at_the_first_call_falls_back_with_one_line(capsys):
    def broken_backend(graph_module, example_inputs):
        raise RuntimeError("no C compiler here\nlong traceback details")

    torch.manual_seed(0)
    x, y = torch.randn(32, 4), torch.randn(32)
    learn = Learner(nn.Linear(4, 1), TensorLoader(x, y, batch_size=8), task=Task("regression"), progress=False,
                    compile=broken_backend)
    learn.fit(1, 1e-2)
    lines = [line for line in capsys.readouterr().out.splitlines() if "torch.compile" in line]
    assert len(lines) == 1 and "no C compiler here" in lines[0] and "training without it" in lines[0]
    assert len(learn.recorder["loss"]) == 4 and learn._compiled.compiled_forward is None
    assert set(learn.model.state_dict()) == {"weight", "bias"}  # saving sees the plain model


@pytest.mark.cuda
@needs_cuda
def test_on_a_gpu_auto_precision_trains_and_lr_find_restores_the_cuda_rng_and_scaler():
    for precision in ("auto", "fp16"):
        torch.manual_seed(0)
        x, y = torch.randn(256, 1, 8, 8), torch.randint(0, 2, (256,))
        # dropout draws from the CUDA RNG inside lr_find; the loader's shuffle from the CPU's
        learn = Learner(conv_net(0.3), TensorLoader(x, y, batch_size=32, shuffle=True), task=Task("multiclass", n_out=2),
                        progress=False, precision=precision)
        assert learn.device.type == "cuda" and learn.opt.defaults["fused"] and learn.device_setup.channels_last
        assert learn.device_setup.precision == ("fp16" if precision == "fp16" or not
                                                torch.cuda.is_bf16_supported(including_emulation=False) else "bf16")
        learn.fit_one_cycle(1, 1e-2)
        scale, cuda_rng = learn.scaler.get_scale() if learn.scaler.is_enabled() else None, torch.cuda.get_rng_state()
        learn.lr_find(num_it=20, plot=False)
        assert torch.equal(torch.cuda.get_rng_state(), cuda_rng)
        assert (learn.scaler.get_scale() if learn.scaler.is_enabled() else None) == scale
        assert np.isfinite(learn.recorder["loss"]).all()


def test_a_run_settles_its_device_once_and_trains_cpu_and_gpu_configs_apart(fake_gpu, monkeypatch):
    from kitbox.io import fingerprint
    from kitbox.pipeline import stages as pipeline
    from kitbox.adapt.contract import RunSettings
    from kitbox.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pipeline._device_type(None) == "cpu"
    with pytest.raises(InputError, match="no CUDA GPU.*--device cpu"):
        pipeline._device_type("cuda")
    fake_gpu()
    assert pipeline._device_type(None) == "cuda" and pipeline._device_type("cpu") == "cpu"

    recipe = pipeline.Recipe(fn=conv_net)
    configs = [fingerprint.recipe_config("r", recipe, None, seed=0, settings=RunSettings(device=d),
                                         folds=np.zeros(4, int), data={}, adapter=object(), needs={}, refit=False)
               for d in ("cpu", "cuda")]
    assert fingerprint.digest(configs[0]) != fingerprint.digest(configs[1])
    assert fingerprint.differences(configs[0], configs[1]) == ["device: 'cpu' -> 'cuda'"]


@pytest.mark.cuda
@needs_cuda
def test_on_a_gpu_the_entity_embedding_net_follows_the_cpus_losses():
    """The tabular network on CUDA (fp32, TF32 off) takes the CPU's steps: same batches, same losses to float
    tolerance; under bf16 autocast it still learns."""
    from kitbox.tabular.model import TabularModel

    g = torch.Generator().manual_seed(0)
    x_cat = torch.stack([torch.randint(0, c, (2048,), generator=g) for c in (50, 7, 12)], 1)
    x_cont = torch.randn(2048, 4, generator=g)
    y = (x_cont[:, :1] * 0.5 + (x_cat[:, :1] % 3).float() * 0.3).float()
    losses, tf32 = {}, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 matmuls as the CPU does them
    for device, precision in (("cpu", "fp32"), ("cuda", "fp32"), ("cuda", "auto")):
        torch.manual_seed(0)
        model = TabularModel([50, 7, 12], 4, layers=(64, 32), ps=(0.0, 0.0), emb_drop=0.0)
        learn = Learner(model, TensorLoader(x_cat, x_cont, y, batch_size=256, shuffle=True, seed=0),
                        task=Task("regression"), device=device, precision=precision, progress=False)
        learn.fit_one_cycle(2, 1e-2)
        losses[device, precision] = np.array(learn.recorder["loss"])
    torch.backends.cuda.matmul.allow_tf32 = tf32
    np.testing.assert_allclose(losses["cuda", "fp32"], losses["cpu", "fp32"], rtol=1e-3, atol=1e-5)
    assert losses["cuda", "auto"][-4:].mean() < 0.5 * losses["cuda", "auto"][:4].mean()


@pytest.mark.cuda
@needs_cuda
def test_on_a_gpu_sentence_vectors_match_the_cpus():
    """MiniLM's sentence vectors computed on the GPU are the CPU's (the text recipes cache them per run)."""
    transformer = pytest.importorskip("kitbox.text.transformer")
    try:
        tokenizer, backbone = transformer.load_pretrained()
    except ImportError as err:
        pytest.skip(str(err))
    texts = ["Forest fire near La Ronge Sask. Canada", "I love fruits", "Our Deeds are the Reason of this #earthquake"]
    cpu = transformer.sentence_embeddings(tokenizer, backbone, texts, device="cpu")
    gpu = transformer.sentence_embeddings(tokenizer, backbone, texts, device="cuda")
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    assert (np.sum(cpu * gpu, axis=1) > 0.999).all()  # unit vectors: cosine similarity
