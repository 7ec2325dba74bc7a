"""Lean training layers (tdn/models/lean.py): the values, gradients and running statistics of the
plain modules, fewer saved activations, and the plain path wherever the lean one does not apply."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from tdn.models.lean import bn_relu_conv, bn_relu_max_pool, strided_shortcut

@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)  # the modules' initial weights: each test the same on every run


TOL = {torch.float64: dict(rtol=1e-12, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=1e-5)}


def _bn(channels: int, mode: str, dtype) -> nn.BatchNorm2d:
    kwargs = {"cumulative": dict(momentum=None), "no_affine": dict(affine=False),
              "no_running": dict(track_running_stats=False)}.get(mode, {})
    bn = nn.BatchNorm2d(channels, **kwargs).to(dtype)
    if bn.affine:
        with torch.no_grad():
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
    with torch.no_grad():
        if bn.running_mean is not None:
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    if mode in ("eval", "frozen"):
        bn.eval()
    if mode == "frozen":  # the recipe's frozen batch norms: eval mode and no affine gradients
        bn.requires_grad_(False)
    return bn


def _input(shape, dtype, channels_last: bool, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(shape, generator=g, dtype=dtype)
    if channels_last:
        z = z.contiguous(memory_format=torch.channels_last)
    return z.requires_grad_()


def _compare(lean_fn, plain_fn, modules_lean, modules_plain, z, dtype):
    z_plain = z.detach().clone().requires_grad_()
    out_lean, out_plain = lean_fn(z), plain_fn(z_plain)
    torch.testing.assert_close(out_lean, out_plain, **TOL[dtype])
    g = torch.randn_like(out_plain)
    out_lean.backward(g)
    out_plain.backward(g)
    torch.testing.assert_close(z.grad, z_plain.grad, **TOL[dtype])
    for a, b in zip(modules_lean, modules_plain):
        for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
            if q.grad is None:
                assert p.grad is None, name
                continue
            torch.testing.assert_close(p.grad, q.grad, **TOL[dtype], msg=name)
        for (name, p), (_, q) in zip(a.named_buffers(), b.named_buffers()):
            torch.testing.assert_close(p, q, **TOL[dtype], msg=name)
    return out_lean


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bn_mode", ["train", "cumulative", "eval", "frozen", "no_affine",
                                     "no_running"])
@pytest.mark.parametrize("conv_kind", ["1x1", "3x3_s2_bias", "grouped"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_bn_relu_conv_matches_modules(dtype, bn_mode, conv_kind, channels_last):
    c_in = 6
    conv = {"1x1": nn.Conv2d(c_in, 5, 1, bias=False),
            "3x3_s2_bias": nn.Conv2d(c_in, 4, 3, stride=2, padding=1, bias=True),
            "grouped": nn.Conv2d(c_in, 6, 3, padding=1, groups=3, bias=False)}[conv_kind]
    conv = conv.to(dtype)
    bn, relu = _bn(c_in, bn_mode, dtype), nn.ReLU(inplace=True)
    bn2, conv2 = copy.deepcopy(bn), copy.deepcopy(conv)
    z = _input((3, c_in, 7, 9), dtype, channels_last)
    for _ in range(2):  # twice: the running statistics and num_batches_tracked advance alike
        z.grad = None
        _compare(lambda t: bn_relu_conv(t, bn, relu, conv),
                 lambda t: conv2(relu(bn2(t))), (bn, conv), (bn2, conv2), z, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bn_mode", ["train", "eval"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (11, 7)])
def test_bn_relu_max_pool_matches_modules(dtype, bn_mode, channels_last, size):
    bn, relu = _bn(4, bn_mode, dtype), nn.ReLU(inplace=True)
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    bn2 = copy.deepcopy(bn)
    z = _input((2, 4) + size, dtype, channels_last, seed=1)
    out = _compare(lambda t: bn_relu_max_pool(t, bn, relu, pool),
                   lambda t: pool(relu(bn2(t))), (bn,), (bn2,), z, dtype)
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last
                             else torch.contiguous_format)


def test_relu_ties_at_zero_follow_the_plain_gradient():
    # A window whose maximum is a ReLU zero: the plain backward sends its gradient to a zero
    # of the ReLU, which passes nothing on; the lean backward must do the same.
    bn = _bn(2, "train", torch.float64)
    with torch.no_grad():
        bn.bias.fill_(-5.0)  # nearly everything below zero after the ReLU
    relu, pool = nn.ReLU(), nn.MaxPool2d(3, stride=2, padding=1)
    bn2 = copy.deepcopy(bn)
    z = _input((2, 2, 6, 6), torch.float64, False, seed=2)
    _compare(lambda t: bn_relu_max_pool(t, bn, relu, pool), lambda t: pool(relu(bn2(t))),
             (bn,), (bn2,), z, torch.float64)


# The plain strided convolution runs in float64 for both dtypes: in float32 on an AVX2-only
# CPU, oneDNN 3.12's 1x1 stride-2 weight gradient of an NHWC input with fewer than 8 input
# channels (6 here) is sometimes garbage (about 1 call in 100; uxlfoundation/oneDNN#6035,
# its strided-copy workspace overrun). The lean shortcut's stride-1 convolution of the
# subsampled input does not take that path.
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("size", [(8, 8), (9, 7)])
def test_strided_shortcut_matches_the_strided_convolution(dtype, channels_last, size):
    shortcut = nn.Sequential(nn.Conv2d(6, 8, 1, stride=2, bias=True), nn.BatchNorm2d(8)).to(dtype)
    plain = copy.deepcopy(shortcut).double()
    x = _input((2, 6) + size, dtype, channels_last, seed=3)
    x2 = x.detach().double().requires_grad_()
    out, ref = strided_shortcut(shortcut, x), plain(x2)
    torch.testing.assert_close(out, ref.to(dtype), **TOL[dtype])
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(4), dtype=dtype)
    out.backward(g)
    ref.backward(g.double())
    torch.testing.assert_close(x.grad, x2.grad.to(dtype), **TOL[dtype])
    for p, q in zip(shortcut.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad.to(dtype), **TOL[dtype])


def _saved_bytes(fn, z) -> int:
    """Bytes of the activations ``fn(z)`` keeps for its backward (parameters left out)."""
    storages = {}
    params = set()
    if isinstance(fn, nn.Module):
        params = {p.untyped_storage().data_ptr() for p in fn.parameters()}

    def pack(t):
        if t.untyped_storage().data_ptr() not in params:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(z)
    return sum(storages.values())


def test_lean_functions_keep_less_for_the_backward():
    bn, relu, conv = _bn(16, "train", torch.float32), nn.ReLU(inplace=True), nn.Conv2d(16, 16, 1)
    pool = nn.MaxPool2d(3, stride=2, padding=1)
    z = _input((2, 16, 32, 32), torch.float32, False)
    activation = z.numel() * z.element_size()
    plain = _saved_bytes(lambda t: conv(relu(bn(t))), z)
    lean = _saved_bytes(lambda t: bn_relu_conv(t, bn, relu, conv), z)
    assert plain - lean >= activation  # the ReLU output is no longer kept
    plain = _saved_bytes(lambda t: pool(relu(bn(t))), z)
    lean = _saved_bytes(lambda t: bn_relu_max_pool(t, bn, relu, pool), z)
    assert plain - lean >= activation


def test_plain_path_when_a_module_has_hooks_or_without_autograd():
    bn, relu, conv = _bn(4, "train", torch.float32), nn.ReLU(), nn.Conv2d(4, 4, 1)
    calls = []
    handle = relu.register_forward_hook(lambda m, i, o: calls.append(o.shape))
    z = _input((2, 4, 5, 5), torch.float32, False)
    out = bn_relu_conv(z, bn, relu, conv)
    assert calls == [torch.Size([2, 4, 5, 5])]  # the hook ran: the plain modules were called
    assert "_BatchNormReLUThen" not in type(out.grad_fn).__name__
    handle.remove()
    out = bn_relu_conv(z, bn, relu, conv)
    assert "_BatchNormReLUThen" in type(out.grad_fn).__name__
    with torch.no_grad():
        assert bn_relu_conv(z, bn, relu, conv).grad_fn is None


def test_double_backward_raises_instead_of_returning_a_wrong_gradient():
    # The lean backward is once-differentiable: a gradient of its gradient is an error (the
    # model's lean mode can be switched off for that), never a silently missing term.
    bn, relu, conv = _bn(4, "train", torch.float64), nn.ReLU(), nn.Conv2d(4, 4, 1).double()
    z = _input((2, 4, 5, 5), torch.float64, False)
    out = bn_relu_conv(z, bn, relu, conv)
    (grad,) = torch.autograd.grad(out.sum(), z, create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad|once_differentiable"):
        grad.sum().backward()


def _graph_node_names(out: torch.Tensor) -> set[str]:
    names, stack, seen = set(), [out.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return names


@pytest.mark.parametrize("arch,backend,lean", [("tdn_resnet18", None, True),
                                               ("tdn_resnet50", "reference", False),
                                               ("tsn_resnet18", None, True)])
def test_models_train_lean_unless_reference(arch, backend, lean):
    import tdn

    model = tdn.build_model(arch, num_classes=3, num_segments=2, backend=backend).train()
    x = torch.randn(1, 2 * 15, 64, 64)
    names = _graph_node_names(model(x))
    assert ("_BatchNormReLUThenBackward" in names) is lean
    saved_lean = _saved_bytes(model, x)
    tdn.models.lean.set_lean_training(model, False)
    assert "_BatchNormReLUThenBackward" not in _graph_node_names(model(x))
    saved_plain = _saved_bytes(model, x)
    assert (saved_lean < 0.85 * saved_plain) is lean


def test_lean_model_compiles_to_one_graph_in_training():
    # Under torch.compile the lean functions are plain modules (Inductor plans its own
    # recomputation); Dynamo must see that as a constant and trace the model in one graph.
    import tdn

    model = tdn.build_model("tdn_resnet18", num_classes=3, num_segments=2).train()
    x = torch.randn(1, 2 * 15, 64, 64)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    torch.manual_seed(1)
    compiled(x).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    torch.manual_seed(1)
    model(x).sum().backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-4, atol=1e-5, msg=name)
