import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from softness import config
from softness.errors import SoftnessError
from softness.systems import silica


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


# ---------------------------------------------------------------------------- cross-key rules

ROOT = Path(__file__).resolve().parents[1]


def merged(base: dict, over: dict) -> dict:
    """``over`` merged into ``base`` key by key (how Snakemake merges --configfile files)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def ci_config() -> dict:
    """config/test.yaml on top of config/config.yaml, as `--configfile config/test.yaml` gives it."""
    read = lambda name: yaml.safe_load((ROOT / "config" / name).read_text())  # noqa: E731
    return merged(read("config.yaml"), read("test.yaml"))


# Each row: a change to config/test.yaml that breaks exactly one rule, the rule, and the keys
# its message must name. config/test.yaml: 192 atoms in a 14.26 A box, 1 fs steps, frames every
# 20 fs over 4000 fs (201 frames), t_R = t_quiet = 200 fs, chunks of 250 steps.
CROSS_KEY_CASES = [
    ({"system": {"initial_structure": "quartz"}}, "_initial_structure",
     ("system.n_sio2", "system.initial_structure")),
    ({"system": {"density_g_cm3": 5.0}}, "_initial_structure", ("system.density_g_cm3", "system.n_sio2")),
    ({"potential": {"cutoff_A": 7.2}}, "_potential_cutoff_vs_box", ("potential.cutoff_A", "system.n_sio2")),
    ({"system": {"n_sio2": 50}}, "_potential_cutoff_vs_box", ("potential.cutoff_A", "system.n_sio2")),
    ({"features": {"cutoff_A": 7.2}}, "_features_cutoff_vs_box", ("features.cutoff_A", "system.n_sio2")),
    ({"features": {"radial_r_max_A": 1.0}}, "_radial_grid",
     ("features.radial_r_max_A", "features.radial_r_min_A")),
    ({"features": {"cutoff_A": 5.9}}, "_radial_vs_cutoff", ("features.radial_r_max_A", "features.cutoff_A")),
    ({"quench": {"T_min_K": 3600.0}}, "_quench_temperatures", ("quench.T_min_K", "temperatures_K")),
    ({"temperatures_K": [3500, 4500, 6100]}, "_melt_temperatures", ("temperatures_K", "quench.T_melt_K")),
    ({"train": {"T_train_K": 4000}}, "_training_temperature", ("train.T_train_K", "temperatures_K")),
    ({"train": {"stability_T_K": 4000}}, "_stability_temperature", ("train.stability_T_K", "temperatures_K")),
    ({"planted": {"P_min": 0.4}}, "_planted_bounds", ("planted.P_min", "planted.P_max")),
    ({"quench": {"frame_interval_fs": 250.5}}, "_quench_frames_vs_timestep",
     ("quench.frame_interval_fs", "md.timestep_fs")),
    ({"md": {"timestep_fs": 3.0}}, "_quench_frames_vs_timestep",
     ("quench.frame_interval_fs", "md.timestep_fs")),
    ({"run": {"frame_interval_fs": 20.5}}, "_run_frames_vs_timestep",
     ("run.frame_interval_fs", "md.timestep_fs")),
    ({"md": {"checkpoint_every_steps": 249}}, "_checkpoint_vs_chunk",
     ("md.checkpoint_every_steps", "md.chunk_steps")),
    ({"execution": {"md_replicas_per_job": 2}, "quench": {"ensemble": "npt"}}, "_replicas_vs_quench",
     ("execution.md_replicas_per_job", "quench.ensemble")),
    ({"hops": {"t_R_fs": 20.0}}, "_t_R_vs_frames", ("hops.t_R_fs", "run.frame_interval_fs")),
    ({"arrhenius": {"P_R_window_fs": 10.0}}, "_P_R_window_vs_frames",
     ("arrhenius.P_R_window_fs", "run.frame_interval_fs")),
    ({"hops": {"t_R_fs": 4100.0}}, "_t_R_vs_production", ("hops.t_R_fs", "run.production_time_fs")),
    ({"run": {"production_time_fs": 160.0}}, "_t_R_vs_production", ("hops.t_R_fs", "run.production_time_fs")),
    ({"hops": {"t_quiet_fs": 20.0}}, "_t_quiet_vs_frames", ("hops.t_quiet_fs", "run.frame_interval_fs")),
    ({"hops": {"t_quiet_fs": 3900.0}}, "_t_quiet_vs_production",
     ("hops.t_quiet_fs", "run.production_time_fs")),
    ({"hops": {"p_quiet_A2": {"Si": 1.1}}}, "_p_quiet_vs_p_c", ("hops.p_quiet_A2.Si", "hops.p_c_A2.Si")),
    ({"hops": {"p_c_A2": {"O": 0.3}}}, "_p_quiet_vs_p_c", ("hops.p_quiet_A2.O", "hops.p_c_A2.O")),
    ({"features": {"frame_stride": 201}}, "_feature_frames_vs_run",
     ("features.frame_stride", "run.production_time_fs")),
    ({"train": {"n_per_class": 4}}, "_n_per_class_vs_folds", ("train.n_per_class", "train.cv_folds")),
    ({"train": {"cv_folds": 10, "n_per_class": 13}}, "_n_per_class_vs_folds",
     ("train.n_per_class", "train.cv_folds")),
    ({"dynamics": {"fit_lag_fractions": [0.5, 0.05]}}, "_fit_lag_fractions", ("dynamics.fit_lag_fractions",)),
    ({"run": {"production_time_fs": {3500: 8000.0, 4500: 160.0, 6000: 4000.0}}}, "_t_R_vs_production",
     ("hops.t_R_fs", "run.production_time_fs")),
]


def one_sentence(message: str) -> bool:
    return "\n" not in message and message.endswith(".") and not re.search(r"[.;:]\s+[A-Z]", message)


@pytest.mark.parametrize("change, rule, keys", CROSS_KEY_CASES,
                         ids=[f"{rule}-{i}" for i, (_, rule, _) in enumerate(CROSS_KEY_CASES)])
def test_contradicting_keys_are_refused_naming_both(change, rule, keys):
    good = ci_config()
    config.resolve(good)  # the unchanged test config passes every rule
    bad = merged(good, change)
    with pytest.raises(SoftnessError) as err:
        config.resolve(bad)
    message = str(err.value)
    assert one_sentence(message), message
    for key in keys:
        assert f"'{key}'" in message, message
    # the rule the row is about is the one that refused it (not an earlier, unrelated one)
    filled = merged(config.resolve({}), bad)
    assert getattr(config, rule)(filled) == message


def test_every_cross_key_rule_is_in_the_table():
    tested = {rule for _, rule, _ in CROSS_KEY_CASES}
    assert tested == {r.__name__ for r in config.RULES}


@pytest.mark.parametrize("name", ["config", "test", "paper", "kob_andersen"])
def test_shipped_configs_pass_every_rule(name):
    raw = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
    cfg = config.resolve(merged(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), raw))
    assert [r.__name__ for r in config.RULES if r(cfg)] == []


@pytest.mark.parametrize("system", [
    {"n_sio2": 64, "density_g_cm3": 2.2, "initial_structure": "random"},
    {"n_sio2": 216, "density_g_cm3": 2.6, "initial_structure": "random"},
    {"n_sio2": 72, "density_g_cm3": 2.2, "initial_structure": "quartz"},
    {"n_sio2": 162, "density_g_cm3": 2.65, "initial_structure": "quartz"},
])
def test_box_rule_uses_the_box_the_quench_starts_in(system):
    built = silica.initial_structure(system, np.random.default_rng(0))
    np.testing.assert_allclose(config.initial_box_edges(system), built.box, rtol=1e-12)
    # and that box holds the requested density
    assert built.density_g_cm3 == pytest.approx(system["density_g_cm3"], rel=1e-9)


def test_box_rule_refuses_exactly_below_twice_the_cutoff():
    cfg = ci_config()
    edge = float(config.initial_box_edges(config.resolve(cfg)["system"])[0])
    config.resolve(merged(cfg, {"potential": {"cutoff_A": edge / 2 - 1e-6}}))
    with pytest.raises(SoftnessError, match="potential.cutoff_A"):
        config.resolve(merged(cfg, {"potential": {"cutoff_A": edge / 2 + 1e-6}}))


def test_hops_rules_count_frames_as_the_stages_do():
    """The frames the rules count are those softness.md.run_plan and softness.hops use."""
    from softness import md  # the MD module imports JAX; only its step arithmetic is used here

    cfg = config.resolve(merged(ci_config(), {"run": {"production_time_fs": 4010.0}}))
    plan = md.run_plan(cfg)
    assert config._production_frames(cfg) == plan["n_prod"] // plan["frame_every"] + 1 == 201
    # the longest t_R that the 201 frames hold passes, the next even frame count does not
    ok = merged(cfg, {"hops": {"t_R_fs": 201 // 2 * 2 * 20.0, "t_quiet_fs": 20.0 * 2}})
    with pytest.raises(SoftnessError, match="hops.t_quiet_fs"):  # the quiet window no longer fits
        config.resolve(ok)
    config.resolve(merged(ok, {"hops": {"t_R_fs": 3000.0, "t_quiet_fs": 1000.0}}))
    with pytest.raises(SoftnessError, match="hops.t_R_fs"):
        config.resolve(merged(ok, {"hops": {"t_R_fs": (201 // 2 + 1) * 2 * 20.0}}))


# ---------------------------------------------------------------------------- run lengths per temperature

def test_one_run_length_for_all_temperatures_is_what_it_was():
    cfg = config.resolve(ci_config())
    for T in cfg["temperatures_K"]:
        assert config.run_time_fs(cfg, "production_time_fs", T) == 4000.0
        assert config.run_time_fs(cfg, "equilibration_time_fs", T) == 1000.0
        assert config.run_section(cfg, T) == cfg["run"]  # the run's identity is unchanged


def test_run_lengths_per_temperature_are_looked_up_by_temperature():
    # YAML gives int keys, JSON string keys; both are one temperature.
    times = {3500: 8000.0, "4500": 6000.0, 6000.0: 4000.0, 7000: 1.0}  # (7000 K: not simulated, ignored)
    cfg = config.resolve(merged(ci_config(), {"run": {"production_time_fs": times,
                                                       "equilibration_time_fs": {3500: 3000.0, 4500: 1000.0,
                                                                                 6000: 1000.0}}}))
    assert cfg["run"]["production_time_fs"] == {3500.0: 8000.0, 4500.0: 6000.0, 6000.0: 4000.0, 7000.0: 1.0}
    got = [config.run_time_fs(cfg, "production_time_fs", T) for T in (3500, 4500.0, 6000)]
    assert got == [8000, 6000, 4000]
    assert config.run_section(cfg, 3500) == {**cfg["run"], "production_time_fs": 8000.0,
                                             "equilibration_time_fs": 3000.0}
    # Between entries: ln(time) linear in 1/T; beyond them: the nearest end.
    x = (1 / 5000 - 1 / 4500) / (1 / 6000 - 1 / 4500)
    assert config.run_time_fs(cfg, "production_time_fs", 5000) == pytest.approx(6000 ** (1 - x) * 4000 ** x)
    assert 4000 < config.run_time_fs(cfg, "production_time_fs", 5000) < 6000
    assert config.run_time_fs(cfg, "production_time_fs", 3000) == 8000.0
    assert config.run_time_fs(cfg, "production_time_fs", 8000) == 1.0
    # Equal times give that time to the bit, between and beyond them (temperatures of equal
    # lengths share an MD job), for a time that exp(ln(time)) does not give back exactly.
    flat = {3000: 10000.0, 4000: 10000.0}
    cfg_flat = config.resolve(merged(ci_config(), {"run": {"production_time_fs": flat}}))
    times = [config.run_time_fs(cfg_flat, "production_time_fs", T) for T in (2500, 3500, 3900, 5000)]
    assert times == [10000.0] * 4
    # The frames the cross-key rules count are those of the shortest run, as md.run_plan counts them.
    from softness import md

    assert config._production_frames(cfg) == 201
    plans = {T: md.run_plan(cfg, T) for T in cfg["temperatures_K"]}
    assert [p["n_prod"] for p in plans.values()] == [8000, 6000, 4000]
    assert [p["n_eq"] for p in plans.values()] == [3000, 1000, 1000]
    with pytest.raises(SoftnessError, match="'run.equilibration_time_fs' is given per temperature"):
        md.run_plan(cfg)


@pytest.mark.parametrize("bad, message", [
    ({"production_time_fs": {"cold": 4000.0}},
     "config key 'run.production_time_fs' maps temperatures (K) to times, but 'cold' is not a temperature."),
    ({"production_time_fs": {3500: 4000.0, "3500": 5000.0}},
     "config key 'run.production_time_fs' gives 3500 K twice."),
    ({"production_time_fs": {3500: -1.0, 4500: 4000.0, 6000: 4000.0}},
     "config key 'run.production_time_fs' must be a time in fs (> 0) or a non-empty mapping from temperature "
     "(K) to such times, not {3500.0: -1.0, 4500.0: 4000.0, 6000.0: 4000.0}."),
    ({"equilibration_time_fs": -1.0},
     "config key 'run.equilibration_time_fs' must be a time in fs (>= 0) or a non-empty mapping from "
     "temperature (K) to such times, not -1.0."),
])
def test_bad_run_lengths_are_refused_in_one_sentence(bad, message):
    with pytest.raises(SoftnessError) as err:
        config.resolve(merged(ci_config(), {"run": bad}))
    assert str(err.value) == message and one_sentence(message)


def test_md_jobs_group_only_temperatures_with_equal_run_lengths():
    temps = [5000, 3000, 3700, 4200, 3300]
    one_length = {"production_time_fs": 5e4, "equilibration_time_fs": 2e4}
    cfg = config.resolve({"temperatures_K": temps, "run": one_length})
    # One length for all: consecutive temperatures, lowest first, as before.
    assert config.md_run_groups(cfg, 2) == [[3000, 3300], [3700, 4200], [5000]]
    assert config.md_run_groups(cfg, 1) == [[T] for T in sorted(temps)]
    prod = {3000: 2e5, 3300: 1e5, 3700: 5e4, 4200: 5e4, 5000: 5e4}
    eq = {3000: 5e4, 3300: 2e4, 3700: 2e4, 4200: 2e4, 5000: 1e4}
    cfg = config.resolve({"temperatures_K": temps, "run": {**one_length, "production_time_fs": prod},
                          "execution": {"md_replicas_per_job": 3}})
    assert config.md_run_groups(cfg) == [[3000], [3300], [3700, 4200, 5000]]
    cfg = config.resolve({"temperatures_K": temps,
                          "run": {"production_time_fs": prod, "equilibration_time_fs": eq}})
    assert config.md_run_groups(cfg, 3) == [[3000], [3300], [3700, 4200], [5000]]
    # Every group runs one plan (md.run_temperatures refuses any other).
    from softness import md

    for job in config.md_run_groups(cfg, 3):
        assert all(md.run_plan(cfg, T) == md.run_plan(cfg, job[0]) for T in job)


# ---------------------------------------------------------------------------- independent runs

def test_independent_runs_default_to_one_and_leave_each_run_alone():
    cfg = config.resolve(ci_config())
    assert cfg["run"]["replicas_per_temperature"] == 1
    assert config.resolve({})["run"]["replicas_per_temperature"] == 1
    many = config.resolve(merged(ci_config(), {"run": {"replicas_per_temperature": 3}}))
    assert many["run"]["replicas_per_temperature"] == 3
    for T in cfg["temperatures_K"]:
        # What one run depends on: the run section less the number of runs, the same for 1 or 3 runs,
        # and otherwise the run section as that temperature sees it.
        one = config.one_run_section(many, T)
        assert one == config.one_run_section(cfg, T)
        assert one == {k: v for k, v in config.run_section(cfg, T).items() if k != "replicas_per_temperature"}
        assert "replicas_per_temperature" not in one
        assert config.run_section(many, T)["replicas_per_temperature"] == 3


@pytest.mark.parametrize("bad, message", [
    (0, "config key 'run.replicas_per_temperature': 0 is less than the minimum of 1."),
    (-2, "config key 'run.replicas_per_temperature': -2 is less than the minimum of 1."),
    (1.5, "config key 'run.replicas_per_temperature': 1.5 is not of type 'integer'."),
    ("two", "config key 'run.replicas_per_temperature': 'two' is not of type 'integer'."),
])
def test_bad_numbers_of_independent_runs_are_refused_in_one_sentence(bad, message):
    with pytest.raises(SoftnessError) as err:
        config.resolve(merged(ci_config(), {"run": {"replicas_per_temperature": bad}}))
    assert str(err.value) == message and one_sentence(message)


# Representative rules through Snakemake: refused at DAG start, before any job, naming both keys.
@pytest.mark.parametrize("change, keys", [
    ({"hops": {"p_quiet_A2": {"Si": 1.1}}}, ("hops.p_quiet_A2.Si", "hops.p_c_A2.Si")),
    ({"features": {"cutoff_A": 7.2}}, ("features.cutoff_A", "system.n_sio2")),
    ({"hops": {"t_quiet_fs": 3900.0}}, ("hops.t_quiet_fs", "run.production_time_fs")),
])
def test_snakemake_refuses_contradicting_keys_before_any_job(tmp_path, change, keys):
    bad = tmp_path / "bad.yaml"
    test_yaml = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    bad.write_text(yaml.safe_dump(merged(test_yaml, change)))
    res = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"),
                          "--directory", str(tmp_path), "-n", "--configfile", str(bad)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out
    assert "invalid config" in out and all(f"'{k}'" in out for k in keys), out
    assert "Job stats" not in out and not (tmp_path / "results").exists()  # no DAG, nothing written


# ---------------------------------------------------------------------------- systems

def ka_config(**change):
    """config/kob_andersen.yaml merged on config/config.yaml, as snakemake merges them."""
    read = lambda name: yaml.safe_load((ROOT / "config" / name).read_text())  # noqa: E731
    return merged(merged(read("config.yaml"), read("kob_andersen.yaml")), change)


def test_old_silica_configs_resolve_to_the_silica_system_unchanged():
    """A config written before systems existed (no system.name) is silica, with its keys as they were."""
    old = ci_config()
    cfg = config.resolve(old)
    assert cfg["system"] == {"name": "silica", **{k: cfg["system"][k] for k in silica.CONFIG_KEYS}}
    assert cfg["system"]["n_sio2"] == old["system"]["n_sio2"]
    assert cfg["potential"] == {"cutoff_A": old["potential"]["cutoff_A"]}
    assert cfg["hops"]["p_c_A2"] == old["hops"]["p_c_A2"]


def test_a_study_keeps_only_its_systems_keys_and_species():
    """Merged on the silica defaults, a KA study drops silica's keys and species values."""
    from softness.systems import kob_andersen as ka

    cfg = config.resolve(ka_config())
    assert set(cfg["system"]) == {"name", *ka.CONFIG_KEYS}
    assert cfg["potential"] == {}
    for key in ("p_c_A2", "p_quiet_A2"):
        assert list(cfg["hops"][key]) == list(ka.SPECIES_NAMES)


@pytest.mark.parametrize("name,study", [("silica", "config"), ("kob_andersen", "kob_andersen")])
def test_each_study_config_uses_its_systems_analysis_defaults(name, study):
    from softness import systems

    raw = yaml.safe_load((ROOT / "config" / f"{study}.yaml").read_text())
    cfg = config.resolve(merged(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()), raw))
    assert cfg["system"]["name"] == name
    for section, values in systems.get(name).ANALYSIS_DEFAULTS.items():
        for key, value in values.items():
            assert cfg[section][key] == value, f"{section}.{key}"


@pytest.mark.parametrize("change,words", [
    ({"system": {"name": "argon"}}, ("system.name", "argon")),
    ({"hops": {"p_c_A2": {"A": 2.0, "b": 2.0}}}, ("hops.p_c_A2", "'b'", "A, B")),
    ({"hops": {"p_quiet_A2": {"A": 0.5, "B": -0.5}}}, ("hops.p_quiet_A2.B",)),
    ({"system": {"n_particles": 1001}}, ("system.n_particles", "80:20")),
    ({"system": {"n_particles": 200}}, ("system.n_particles", "system.number_density", "cutoff")),
    ({"system": {"initial_structure": "quartz"}}, ("system.initial_structure", "kob_andersen")),
    ({"features": {"cutoff_A": 17.0}}, ("features.cutoff_A", "system.n_particles")),
])
def test_bad_system_configs_are_refused_in_one_sentence(change, words):
    with pytest.raises(SoftnessError) as err:
        config.resolve(ka_config(**change))
    message = str(err.value)
    assert one_sentence(message), message
    for w in words:
        assert w in message, message


def test_per_species_keys_must_give_every_species_of_the_system():
    cfg = ka_config()
    cfg["hops"]["p_c_A2"] = {"Si": 1.5, "O": 2.0, "A": 2.3}  # silica's come from config.yaml
    with pytest.raises(SoftnessError, match=r"'hops.p_c_A2' gives no value for species B of system kob_an"):
        config.resolve(cfg)


@pytest.mark.parametrize("name,potential_cfg", [("silica", {"cutoff_A": 7.0}), ("kob_andersen", {})])
def test_the_cheap_cutoff_of_the_config_checks_is_the_potentials(name, potential_cfg):
    """The config checks use cutoff_A() (no JAX at config time); it must be the built potential's."""
    from softness import systems

    system = systems.get(name)
    assert system.cutoff_A(potential_cfg) == system.potential(potential_cfg).cutoff_A
