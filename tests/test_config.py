import pytest
import yaml

from softness import config
from softness.errors import SoftnessError


def test_empty_config_is_complete_and_valid():
    cfg = config.resolve({})
    assert cfg["system"]["n_sio2"] >= 1
    assert cfg["potential"]["cutoff_A"] == 8.0
    assert config.training_temperature(cfg) == min(cfg["temperatures_K"])


def test_user_values_override_defaults_without_touching_siblings():
    cfg = config.resolve({"quench": {"cooling_rate_K_per_ps": 5.0}})
    assert cfg["quench"]["cooling_rate_K_per_ps"] == 5.0
    assert cfg["quench"]["T_melt_K"] == config.resolve({})["quench"]["T_melt_K"]


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"temperature": [3000]}, "temperature"),
        ({"system": {"n_atoms": 10}}, "system.n_atoms"),
        ({"temperatures_K": []}, "temperatures_K"),
        ({"temperatures_K": [3000, -5]}, "temperatures_K.1"),
        ({"quench": {"T_melt_K": "hot"}}, "quench.T_melt_K"),
        ({"system": {"density_g_cm3": 50.0}}, "system.density_g_cm3"),
        ({"features": {"radial_width_A": -0.1}}, "features.radial_width_A"),
        ({"quench": {"T_min_K": 4000}, "temperatures_K": [3000]}, "quench.T_min_K"),
        ({"train": {"T_train_K": 1234}}, "train.T_train_K"),
    ],
)
def test_bad_config_names_the_key(bad, key):
    with pytest.raises(SoftnessError, match=key.replace(".", r"\.")):
        config.resolve(bad)


def test_load_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(SoftnessError, match="does not exist"):
        config.load(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: [1,\n")
    with pytest.raises(SoftnessError, match="not valid YAML"):
        config.load(bad)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"seed": 7}))
    assert config.load(good)["seed"] == 7
