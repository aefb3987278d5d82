"""The figures: physics helpers against references, every figure on synthetic data, for any
number of species (silica Si/O, Kob-Andersen A/B with its reduced units, a made-up X/Y/Z)."""

import json

import h5py
import nbformat
import numpy as np
import pytest
from numpy.testing import assert_allclose

from softness import plotting, systems, units
from softness.errors import SoftnessError
from softness.trajectory import H5MDWriter

SILICA = ("Si", "O")
XYZ = ("X", "Y", "Z")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _saved(fig, tmp_path, name="fig"):
    png, pdf = plotting.save(fig, tmp_path / f"{name}.png", tmp_path / f"{name}.pdf")
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 5000
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 1000
    return fig


def _labels(fig):
    return [ax.get_xlabel() + " | " + ax.get_ylabel() for ax in fig.axes]


# ---------------------------------------------------------------------------- g(r)

def _brute_force_rdf_counts(pos, box, species, edges, n_species=2):
    pairs = [(a, b) for a in range(n_species) for b in range(a, n_species)]
    counts = np.zeros((len(pairs), edges.size - 1))
    pair_of = {**{p: k for k, p in enumerate(pairs)}, **{p[::-1]: k for k, p in enumerate(pairs)}}
    for i in range(len(pos)):
        for j in range(len(pos)):
            if i == j:
                continue
            d = pos[i] - pos[j]
            d -= box * np.round(d / box)
            r = np.linalg.norm(d)
            k = np.searchsorted(edges, r, side="right") - 1
            if 0 <= k < edges.size - 1:
                counts[pair_of[(species[i], species[j])], k] += 1
    return counts


@pytest.mark.parametrize("n_species", [1, 2, 3])
def test_pair_correlation_matches_brute_force_histogram(n_species):
    rng = np.random.default_rng(3)
    box = np.array([9.0, 10.0, 11.0])
    pos = rng.uniform(0, 1, (40, 3)) * box
    species = rng.integers(0, n_species, 40)
    r, g = plotting.pair_correlation(pos, box, species, dr_A=0.25, atom_chunk=7)
    edges = np.arange(r.size + 1) * 0.25
    counts = _brute_force_rdf_counts(pos, box, species, edges, n_species)
    n = np.bincount(species, minlength=n_species)
    shell = 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3)
    pairs = [n[a] * (n[a] - 1) if a == b else 2 * n[a] * n[b] for a, b in plotting.species_pairs(n_species)]
    expected = counts / (np.array(pairs)[:, None] / np.prod(box) * shell)
    assert r[-1] < 0.5 * box.min()
    assert g.shape == (n_species * (n_species + 1) // 2, r.size)
    assert_allclose(g, expected, rtol=1e-12)


def test_pair_correlation_has_a_row_for_a_species_without_atoms():
    rng = np.random.default_rng(5)
    pos = rng.uniform(0, 10.0, (30, 3))
    species = rng.integers(0, 2, 30)  # species 2 of 3 has no atoms
    r, g = plotting.pair_correlation(pos, np.full(3, 10.0), species, dr_A=0.5, n_species=3)
    r2, g2 = plotting.pair_correlation(pos, np.full(3, 10.0), species, dr_A=0.5)
    assert g.shape[0] == 6 and g2.shape[0] == 3
    # rows 0-0, 0-1, 1-1 of the 3-species result are the 2-species ones; pairs with species 2 are zero
    assert_allclose(g[[0, 1, 3]], g2, rtol=1e-12)
    assert np.all(g[[2, 4, 5]] == 0)


@pytest.mark.parametrize("counts", [[200, 400], [100, 200, 300]])
def test_pair_correlation_of_an_ideal_gas_is_one(counts):
    rng = np.random.default_rng(0)
    box = np.full(3, 20.0)
    pos = rng.uniform(0, 20.0, (20, sum(counts), 3))
    species = np.repeat(np.arange(len(counts)), counts)
    r, g = plotting.pair_correlation(pos, box, species, r_max_A=8.0, dr_A=0.5)
    far = r > 3.0
    assert g.shape[0] == len(counts) * (len(counts) + 1) // 2
    assert_allclose(g[:, far].mean(axis=1), 1.0, atol=0.02)


def test_pair_correlation_counts_the_shells_of_a_lattice():
    # simple cubic lattice, spacing a: nothing below a, then 6 neighbours at a and 12 at a sqrt(2)
    a, m, dr = 2.0, 6, 0.1
    grid = np.stack(np.meshgrid(*[np.arange(m)] * 3, indexing="ij"), -1).reshape(-1, 3) * a + 0.3
    r, g = plotting.pair_correlation(grid, np.full(3, a * m), np.zeros(len(grid), int), dr_A=dr)
    density = (len(grid) - 1) / (a * m) ** 3  # g_aa is normalised by N_a (N_a - 1)
    edges = np.arange(r.size + 1) * dr
    running = np.cumsum(density * g[0] * 4 / 3 * np.pi * (edges[1:] ** 3 - edges[:-1] ** 3))
    assert np.all(g[0][r < a - dr] == 0)
    assert_allclose(running[np.searchsorted(r, a + 0.2)], 6.0, rtol=1e-9)
    assert_allclose(running[np.searchsorted(r, a * np.sqrt(2) + 0.2)], 18.0, rtol=1e-9)


# ---------------------------------------------------------------------------- fits

def test_log_linear_fit_recovers_an_arrhenius_law():
    t = np.array([2500.0, 3000.0, 3500.0, 4000.0])
    tau = 12.0 * np.exp(30000.0 / t)
    a, b = plotting.log_linear_fit(1.0 / t, tau)
    assert_allclose([a, b], [np.log(12.0), 30000.0], rtol=1e-10)
    assert np.isnan(plotting.log_linear_fit([1.0], [2.0])[0])


def test_arrhenius_fit_uses_only_the_lowest_temperatures():
    t = np.array([5000.0, 2500.0, 3000.0, 3500.0, 4500.0])
    tau = 5.0 * np.exp(20000.0 / t)
    tau[t > 4000] *= 3.0  # fragile departure at high T must not enter the fit
    a, b, used = plotting.arrhenius_fit_lowest(t, tau, 3)
    assert_allclose(sorted(used), [2500.0, 3000.0, 3500.0])
    assert_allclose(b, 20000.0, rtol=1e-10)


# ---------------------------------------------------------------------------- figures

def _synthetic_dynamics(t, n_species=2):
    """tau_alpha and D [nT, n_species]: species k has its own prefactor and barriers."""
    k = np.arange(n_species)
    tau = (100 - 20 * k) * np.exp((25000 - 1000 * k) / t[:, None])
    diff = 1e-2 * np.exp(-(26000 - 2000 * k) / t[:, None])
    return tau, diff


def _attrs(f, system=None, config_system=None):
    if system is not None:
        f.attrs["system"] = system
    if config_system is not None:
        f.attrs["config"] = json.dumps({"system": {"name": config_system}})


def test_relaxation_figure_reports_the_low_T_barrier(tmp_path):
    t = np.array([3000.0, 3300.0, 3700.0, 4200.0, 5000.0])
    tau, diff = _synthetic_dynamics(t)
    fig = _saved(plotting.relaxation_figure(t, tau, diff, D_err_A2_per_fs=0.05 * diff), tmp_path)
    labels = " ".join(_labels(fig))
    assert "(fs)" in labels and "1000 / T (1/K)" in labels
    legend = " ".join(txt.get_text() for ax in fig.axes if ax.get_legend() for txt in ax.get_legend().texts)
    # the Si tau_alpha barrier 25000 K, in eV
    assert f"{units.kcal_per_mol_to_eV(25000 * units.KB):.2f} eV" in legend


def _dynamics_file(path, temperature, tau, diff, names=SILICA, **system):
    with h5py.File(path, "w") as f:
        _attrs(f, **system)
        f["species_names"] = np.array(names, dtype="S")
        f.attrs["temperature_K"] = temperature
        f["tau_alpha_fs"] = tau
        f["tau_alpha_reached"] = np.isfinite(tau)
        f["D_A2_per_fs"] = diff
        f["D_err_A2_per_fs"] = 0.1 * diff
        f["lag_time_fs"] = np.arange(1.0, 5.0)
        f["msd_A2"] = np.ones((len(names), 4))
        f["F_s"] = np.ones((len(names), 4))
    return path


def test_relaxation_from_files_sorts_by_temperature(tmp_path):
    t = np.array([5000.0, 3000.0, 4000.0])
    tau, diff = _synthetic_dynamics(t)
    tau[0, 1] = np.nan  # not reached
    paths = []
    for k in range(3):
        paths.append(tmp_path / f"d{k}.h5")
        _dynamics_file(paths[-1], t[k], tau[k], diff[k])
    d = plotting.read_dynamics(paths)
    assert_allclose(d["temperature_K"], [3000, 4000, 5000])
    assert_allclose(d["tau_alpha_fs"][2], tau[0])
    _saved(plotting.relaxation_from_files(paths), tmp_path)
    with pytest.raises(SoftnessError, match="does not exist"):
        plotting.read_dynamics([tmp_path / "missing.h5"])


def _synthetic_arrhenius(path, t, s, names=SILICA, **system):
    """An Arrhenius product that follows the softness picture exactly (every species its own numbers;
    for two species those of the silica tests)."""
    n = len(names)
    k = np.arange(n)
    e0, e1 = 30000.0 - 2000 * k, 5000.0 - 1000 * k
    s0, s1 = 2.0 - 0.5 * k, 0.5 - 0.1 * k
    a, b = -1.0 + 0.2 * k, 4e-4 - 1e-4 * k
    de, sig = e0[:, None] - e1[:, None] * s, s0[:, None] - s1[:, None] * s
    p = np.exp(sig[:, None, :] - de[:, None, :] / t[None, :, None])  # [n, T, S]
    p[0, :2, 0] = np.nan  # no events in the hardest Si bin at low T
    t_mid = np.sqrt(t[1:] * t[:-1])
    e_app = plotting.predicted_apparent_barrier(t_mid, e0[:, None], e1[:, None], s1[:, None], a[:, None],
                                                b[:, None])
    data = {
        "temperature_K": t, "P_R": p, "ln_P_R_err": np.full(p.shape, 0.1), "usable": np.isfinite(p),
        "bins/S_mean": s, "bin_fit/Sigma": sig, "bin_fit/Sigma_err": 0.1 + 0 * sig, "bin_fit/DeltaE_K": de,
        "bin_fit/DeltaE_K_err": 0.02 * de, "lines/e0_K": e0, "lines/e1_K": e1, "lines/Sigma0": s0,
        "lines/Sigma1": s1, "mean_softness/mean": a[:, None] + b[:, None] * t,
        "mean_softness/err": np.full((n, t.size), 0.01), "mean_softness/a": a, "mean_softness/b_per_K": b,
        "crossover/T_mid_K": t_mid, "crossover/E_app_rate_K": e_app,
        "crossover/E_app_rate_K_err": np.repeat((500.0 - 200 * k)[:, None], t.size - 1, axis=1),
        "crossover/E_app_tau_K": np.repeat((25000.0 - 4000 * k)[:, None], t.size - 1, axis=1),
        "tau_fit/ln_tau0": 4.0 + 0.2 * k, "tau_fit/E_low_K": 25000.0 - 1000 * k,
        "tau_fit/E_high_K": 12000.0 - 1000 * k,  # no crossover fit for species 1 (NaN)
        "tau_fit/T_x_K": np.where(k == 1, np.nan, 3600.0 - 100 * k),
        "tau_fit/T_x_K_err": np.where(k == 1, np.nan, 120.0 - 10 * k),
        "flagged_temperature": np.zeros((n, t.size), bool),
        "species_names": np.array(names, dtype="S"),
    }
    with h5py.File(path, "w") as f:
        _attrs(f, **system)
        for key, value in data.items():
            f[key] = value
        f.attrs["T_train_K"] = t.min()
    return data


def test_apparent_barrier_of_the_softness_picture():
    # E_app = -d ln P_R / d(1/T) at S = <S>(T) = a + b T, ln P_R = Sigma0 - Sigma1 S - (e0 - e1 S) / T
    e0, e1, s0, s1, a, b = 30000.0, 5000.0, 2.0, 0.5, -1.0, 4e-4
    t, h = 3000.0, 1e-9

    def ln_p(x):  # x = 1/T
        s = a + b / x
        return s0 - s1 * s - (e0 - e1 * s) * x

    numeric = -(ln_p(1 / t + h) - ln_p(1 / t - h)) / (2 * h)
    assert_allclose(plotting.predicted_apparent_barrier(t, e0, e1, s1, a, b), numeric, rtol=1e-5)


def test_figures_from_an_arrhenius_product(tmp_path):
    t = np.linspace(2500, 5000, 6)
    s = np.tile(np.linspace(-2, 2, 8), (2, 1))
    path = tmp_path / "arrhenius.h5"
    _synthetic_arrhenius(path, t, s)
    fig = _saved(plotting.rearrangement_probability_from_file(path, max_bins=5), tmp_path, "pr")
    assert [ax.get_title() for ax in fig.axes[:2]] == ["Si", "O"]
    assert len(fig.axes[0].get_legend().texts) == 5
    with h5py.File(path, "a") as f:  # the hardest O bin was not fitted
        f["bin_fit/DeltaE_K"][1, 0] = np.nan
    fig = _saved(plotting.barriers_from_file(path), tmp_path, "barriers")
    assert any("(eV)" in lab for lab in _labels(fig))
    # Each fitted line spans the bins that entered its fit, and no further.
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith(("Si:", "O:"))]
    assert [ln.get_label().split(":")[0] for ln in lines] == ["Si", "O"]
    assert_allclose([lines[0].get_xdata().min(), lines[0].get_xdata().max()], [-2, 2])
    assert_allclose([lines[1].get_xdata().min(), lines[1].get_xdata().max()], [s[1, 1], 2])
    fig = _saved(plotting.crossover_from_file(path), tmp_path, "crossover")
    assert any("apparent barrier" in lab for lab in _labels(fig))
    dyn = []
    tau, diff = _synthetic_dynamics(t)
    for k in range(t.size):
        dyn.append(tmp_path / f"d{k}.h5")
        _dynamics_file(dyn[-1], t[k], tau[k], diff[k])
    fig = _saved(plotting.relaxation_from_files(dyn, path), tmp_path, "relaxation")
    legend = " ".join(txt.get_text() for txt in fig.axes[0].get_legend().texts)
    assert "below T$_x$" in legend and "3600 ± 120 K" in legend
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(SoftnessError, match="no 'temperature_K'"):
        plotting.read_arrhenius(tmp_path / "foreign.h5")


def test_temperatures_without_cage_jumps_are_grey_in_the_P_R_figure(tmp_path):
    t = np.linspace(2500, 5000, 6)
    s = np.tile(np.linspace(-2, 2, 8), (2, 1))
    path = tmp_path / "arrhenius.h5"
    d = _synthetic_arrhenius(path, t, s)
    with h5py.File(path, "a") as f:  # O at the hottest temperature: flagged, so not usable either
        f["flagged_temperature"][1, -1] = True
        f["usable"][1, -1] = False
    fig = plotting.rearrangement_probability_from_file(path, max_bins=8)
    ax_si, ax_o = fig.axes[:2]
    assert "no cage jumps (not fitted)" not in _series(ax_si)
    grey = [c for c in ax_o.containers if c.lines[0].get_color() == "0.6"]
    assert len(grey) == 8 and grey[0].get_label() == "no cage jumps (not fitted)"
    for k, c in enumerate(grey):
        assert_allclose(c.lines[0].get_xdata(), [1000 / t[-1]])
        assert_allclose(c.lines[0].get_ydata(), [d["P_R"][1, -1, k]])
        assert c.lines[0].get_markerfacecolor() == "none"
    # The other O points keep their bins' colours.
    x_o = _series(ax_o)[f"S = {s[1, 3]:+.2f}"][0]
    assert_allclose(x_o, 1000 / t[:-1])


def _series(ax):
    """Label -> (x, y) of every labelled error-bar series and line of an axes."""
    out = {}
    for c in ax.containers:
        if c.get_label() and not c.get_label().startswith("_") and c.lines[0] is not None:
            out[c.get_label()] = (np.asarray(c.lines[0].get_xdata()), np.asarray(c.lines[0].get_ydata()))
    for ln in ax.get_lines():
        if ln.get_label() and not ln.get_label().startswith("_") and ln.get_label() not in out:
            out[ln.get_label()] = (np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float))
    return out


def test_every_figure_draws_each_species_own_data(tmp_path):
    """From an Arrhenius product (and dynamics files) in which Si and O differ in every number,
    each species' points and lines in every figure are that species' data."""
    t = np.linspace(2500, 5000, 6)
    s = np.stack([np.linspace(-2, 2, 8), np.linspace(-1, 3, 8)])
    path = tmp_path / "arrhenius.h5"
    d = _synthetic_arrhenius(path, t, s)
    ev = units.eV_to_K(1.0)
    x = 1000.0 / t

    fig = plotting.rearrangement_probability_from_file(path, max_bins=8)
    for sp, ax in enumerate(fig.axes[:2]):
        assert ax.get_title() == ("Si", "O")[sp]
        series = _series(ax)
        for k in range(8):
            use = d["usable"][sp, :, k]
            if not use.any():
                continue
            px, py = series[f"S = {s[sp, k]:+.2f}"]
            assert_allclose(px, x[use])
            assert_allclose(py, d["P_R"][sp, use, k])
        fits = [ln for ln in ax.get_lines() if ln.get_linestyle() == "-" and ln.get_marker() in ("None", "")]
        assert len(fits) == 8
        lx = fits[-1].get_xdata()
        expected = np.exp(d["bin_fit/Sigma"][sp, -1] - d["bin_fit/DeltaE_K"][sp, -1] * lx / 1000)
        assert_allclose(fits[-1].get_ydata(), expected, rtol=1e-10)

    fig = plotting.barriers_from_file(path)
    ax_e, ax_s = fig.axes[:2]
    se, ss = _series(ax_e), _series(ax_s)
    for sp, name in enumerate(("Si", "O")):
        assert_allclose(se[f"{name}, per bin"][1], d["bin_fit/DeltaE_K"][sp] / ev)
        assert_allclose(se[f"{name}, per bin"][0], s[sp])
        assert_allclose(ss[f"{name}, per bin"][1], d["bin_fit/Sigma"][sp])
        (lx, ly), = [v for k, v in se.items() if k.startswith(f"{name}:")]
        assert_allclose(ly, (d["lines/e0_K"][sp] - d["lines/e1_K"][sp] * lx) / ev)
        (lx, ly), = [v for k, v in ss.items() if k.startswith(f"{name}:")]
        assert_allclose(ly, d["lines/Sigma0"][sp] - d["lines/Sigma1"][sp] * lx)

    fig = plotting.crossover_from_file(path)
    ax_s, ax_e = fig.axes[:2]
    ss, se = _series(ax_s), _series(ax_e)
    for sp, name in enumerate(("Si", "O")):
        assert_allclose(ss[name][1], d["mean_softness/mean"][sp])
        (lx, ly), = [v for k, v in ss.items() if k.startswith(f"{name}:")]
        assert_allclose(ly, d["mean_softness/a"][sp] + d["mean_softness/b_per_K"][sp] * lx)
        assert_allclose(se[f"{name}, from the rearrangement rate"][1], d["crossover/E_app_rate_K"][sp] / ev)
        assert_allclose(se[rf"{name}, from $\tau_\alpha$"][1], d["crossover/E_app_tau_K"][sp] / ev)
        lx, ly = se[f"{name}, softness prediction"]
        assert_allclose(ly * ev, plotting.predicted_apparent_barrier(
            lx, d["lines/e0_K"][sp], d["lines/e1_K"][sp], d["lines/Sigma1"][sp], d["mean_softness/a"][sp],
            d["mean_softness/b_per_K"][sp]))
    bars = [c for c in ax_e.containers if "rearrangement rate" in c.get_label()]
    for sp, c in enumerate(bars):  # the error bars are each species' own
        segments = c.lines[2][0].get_segments()
        assert_allclose([seg[1, 1] - seg[0, 1] for seg in segments],
                        2 * d["crossover/E_app_rate_K_err"][sp] / ev)

    tau, diff = _synthetic_dynamics(t)
    dyn = []
    for k in range(t.size):
        dyn.append(tmp_path / f"d{k}.h5")
        _dynamics_file(dyn[-1], t[k], tau[k], diff[k])
    fig = plotting.relaxation_from_files(dyn, path)
    ax_tau, ax_d = fig.axes[:2]
    st, sd = _series(ax_tau), _series(ax_d)
    for sp, name in enumerate(("Si", "O")):
        assert_allclose(st[name][1], tau[:, sp])
        assert_allclose(sd[name][1], diff[:, sp])
        if sp == 1:  # O has no crossover fit (NaN): no line
            assert not [k for k in st if k.startswith(f"{name} fit")]
            continue
        (lx, ly), = [v for k, v in st.items() if k.startswith(f"{name} fit")]
        ln_tau0, e_low, e_high, t_x = (d[f"tau_fit/{k}"][sp]
                                       for k in ("ln_tau0", "E_low_K", "E_high_K", "T_x_K"))
        cold = 1000 / lx <= t_x
        assert cold.any() and (~cold).any()
        assert_allclose(ly[cold], np.exp(ln_tau0 + e_low * lx[cold] / 1000))
        assert_allclose(ly[~cold], np.exp(ln_tau0 + e_low / t_x + e_high * (lx[~cold] / 1000 - 1 / t_x)))

    rng = np.random.default_rng(4)
    species = rng.permutation(np.repeat([0, 1], [40, 80]))
    values = [np.where(species == 0, rng.normal(-1 + 0.2 * k, 0.3, (50, 120)),
                       rng.normal(2 - 0.1 * k, 0.5, (50, 120))) for k in range(3)]
    fig = plotting.softness_distribution_figure([3000.0, 4000.0, 5000.0], values, species)
    for sp, ax in enumerate(fig.axes[:2]):
        means = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert_allclose(means, [v[:, species == sp].mean() for v in values])

    fig = plotting.classifier_figure([0.01, 0.1, 1.0], [[0.7, 0.8, 0.75], [0.6, 0.62, 0.65]],
                                     C_chosen=[0.1, 1.0], test_accuracy=[0.81, 0.66],
                                     test_accuracy_err=[0.01, 0.02], species_names=SILICA)
    sc = _series(fig.axes[0])
    assert_allclose(sc["Si, cross-validation"][1], [0.7, 0.8, 0.75])
    assert_allclose(sc["O, cross-validation"][1], [0.6, 0.62, 0.65])
    assert_allclose(np.concatenate(sc["Si, held-out at chosen C"]).astype(float), [0.1, 0.81])
    assert_allclose(np.concatenate(sc["O, held-out at chosen C"]).astype(float), [1.0, 0.66])


def test_pair_correlation_figure(tmp_path):
    r = np.linspace(0.05, 7.95, 80)
    g = 1 + np.exp(-((r - 1.6) / 0.1) ** 2)[None, None, :] * np.ones((3, 3, 1))
    _saved(plotting.pair_correlation_figure([3000, 4000, 5000], r, g), tmp_path)


def test_softness_distribution_figure(tmp_path):
    rng = np.random.default_rng(1)
    species = np.repeat([0, 1], [10, 20])
    t = [3000.0, 4000.0, 5000.0]
    values = [rng.normal(-1 + k, 1.0, (50, 30)) for k in range(3)]
    values[2][7, 3] = 1e9  # one wild value must not squash the distributions into one bin
    fig = _saved(plotting.softness_distribution_figure(t, values, species, species_names=SILICA), tmp_path)
    assert [ax.get_title() for ax in fig.axes] == ["Si", "O"]
    lo, hi = fig.axes[0].get_xlim()
    assert -10 < lo < -2 and 2 < hi < 10


def test_softness_distribution_shows_the_bulk_and_reports_a_heavy_tail(tmp_path):
    # As Si in a hot run: a narrow bulk moving with T, plus 1 % of atoms far out at S ~ 3-8
    # (structures never seen in training); pooled percentiles would stretch the axis to them.
    rng = np.random.default_rng(2)
    species = np.zeros(200, dtype=int)
    species[100:] = 1
    t = [3000.0, 4000.0, 5000.0]
    values = [rng.normal(0.03 * k, 0.04, (500, 200)) for k in range(3)]
    tail = (rng.random((500, 200)) < 0.01) & (species == 0)
    values[2][tail] = rng.uniform(3, 8, tail.sum())
    fig = _saved(plotting.softness_distribution_figure(t, values, species, bins=50), tmp_path)
    ax = fig.axes[0]
    lo, hi = ax.get_xlim()
    assert -0.3 < lo < -0.15 and 0.25 < hi < 0.4  # +/- 6 robust sigma around each median
    # Area under each curve = share inside the axis: the tail is missing only from 5000 K.
    areas = [np.sum(st.get_data().values * np.diff(st.get_data().edges)) for st in ax.patches]
    assert_allclose(areas[:2], 1.0, atol=1e-3)
    assert_allclose(areas[2], 1 - tail[:, species == 0].mean(), atol=1e-3)
    labels = [txt.get_text() for txt in ax.get_legend().texts]
    assert labels == ["3000 K", "4000 K", f"5000 K, {100 * tail[:, species == 0].mean():.1f} % off axis"]
    assert [txt.get_text() for txt in fig.axes[1].get_legend().texts] == ["3000 K", "4000 K", "5000 K"]


def test_classifier_from_file(tmp_path):
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["T_train_K"] = 3000.0
        f["C_grid"] = [0.01, 0.1, 1.0, 10.0]
        f["cv_accuracy_mean"] = [[0.7, 0.8, 0.85, 0.84], [0.6, 0.7, 0.75, 0.74]]
        f["cv_accuracy_std"] = np.full((2, 4), 0.02)
        f["C"] = [1.0, 1.0]
        f["accuracy"] = [0.86, 0.76]
        f["accuracy_err"] = [0.01, 0.01]
        f["species_names"] = np.array(SILICA, dtype="S")
    fig = _saved(plotting.classifier_from_file(path), tmp_path)
    assert fig.axes[0].get_xscale() == "log"
    assert "3000 K" in fig.axes[0].get_title()


# ---------------------------------------------------------------------------- any species, any system

def _trajectory_file(path, positions, species, names, box, temperature, **system):
    """An H5MD trajectory of wrapped ``positions`` [F, N, 3] in a cubic box."""
    with h5py.File(path, "w") as f:
        _attrs(f, **system)
        f.attrs["temperature_K"] = temperature
        w = H5MDWriter(f, species, np.full(len(species), 20.0), [box] * 3, species_names=names)
        w.append(np.arange(len(positions)), np.arange(len(positions)) * 10.0, positions % box,
                 np.zeros(positions.shape, np.int32))
    return path


def _softness_file(path, temperature, softness, species, names, **system):
    with h5py.File(path, "w") as f:
        _attrs(f, **system)
        f.attrs["temperature_K"] = temperature
        f["softness"] = softness
        f["species"] = species
        f["species_names"] = np.array(names, dtype="S")
    return path


def _model_file(path, names, **system):
    n = len(names)
    with h5py.File(path, "w") as f:
        _attrs(f, **system)
        f.attrs["T_train_K"] = 3000.0
        f["C_grid"] = [0.01, 0.1, 1.0]
        f["cv_accuracy_mean"] = 0.6 + 0.05 * np.arange(n)[:, None] + np.array([0.0, 0.02, 0.01])
        f["C"] = np.full(n, 0.1)
        f["accuracy"] = 0.62 + 0.05 * np.arange(n)
        f["species_names"] = np.array(names, dtype="S")
    return path


def _legend(ax):
    return [txt.get_text() for txt in ax.get_legend().texts]


def _species_series(ax, names):
    """(colour, marker) of the series labelled exactly by each species name."""
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    for c in ax.containers:
        if c.get_label() in names:
            lines[c.get_label()] = c.lines[0]
    return [(lines[n].get_color(), lines[n].get_marker()) for n in names]


def test_three_species_products_give_one_panel_or_series_per_species(tmp_path):
    """A made-up X, Y, Z system: every figure has one panel or one legend entry per species, each
    with that species' own numbers and its own colour and marker."""
    t = np.linspace(2500, 5000, 6)
    s = np.stack([np.linspace(-2, 2, 8) + 0.5 * k for k in range(3)])
    path = tmp_path / "arrhenius.h5"
    d = _synthetic_arrhenius(path, t, s, XYZ)
    ev = units.eV_to_K(1.0)

    fig = _saved(plotting.rearrangement_probability_from_file(path, max_bins=8), tmp_path, "pr")
    assert [ax.get_title() for ax in fig.axes] == list(XYZ)
    for sp, ax in enumerate(fig.axes):
        px, py = _series(ax)[f"S = {s[sp, 4]:+.2f}"]
        assert_allclose(py, d["P_R"][sp, :, 4])

    fig = plotting.barriers_from_file(path)
    ax_e = fig.axes[0]
    assert [lab for lab in _legend(ax_e) if lab.endswith("per bin")] == [f"{n}, per bin" for n in XYZ]
    for sp, name in enumerate(XYZ):
        assert_allclose(_series(ax_e)[f"{name}, per bin"][1], d["bin_fit/DeltaE_K"][sp] / ev)

    fig = plotting.crossover_from_file(path)
    ss = _series(fig.axes[0])
    for sp, name in enumerate(XYZ):
        assert_allclose(ss[name][1], d["mean_softness/mean"][sp])
    styles = _species_series(fig.axes[0], XYZ)
    assert len(set(styles)) == 3 and len({c for c, _ in styles}) == 3 and len({m for _, m in styles}) == 3

    tau, diff = _synthetic_dynamics(t, 3)
    dyn = [_dynamics_file(tmp_path / f"d{k}.h5", t[k], tau[k], diff[k], XYZ) for k in range(t.size)]
    fig = _saved(plotting.relaxation_from_files(dyn, path), tmp_path, "relaxation")
    ax_tau, ax_d = fig.axes
    for sp, name in enumerate(XYZ):
        assert_allclose(_series(ax_tau)[name][1], tau[:, sp])
        assert_allclose(_series(ax_d)[name][1], diff[:, sp])
    assert [lab for lab in _legend(ax_tau) if "crossover" in lab] == ["X crossover T$_x$ = 3600 ± 120 K",
                                                                       "Z crossover T$_x$ = 3400 ± 100 K"]
    # the fitted D barrier of each species: 26000 - 2000 k K
    for sp, name in enumerate(XYZ):
        (lab,) = [lab for lab in _legend(ax_d) if lab.startswith(f"{name} Arrhenius")]
        assert lab.endswith(f"{(26000 - 2000 * sp) / ev:.2f} eV")

    rng = np.random.default_rng(6)
    species = rng.permutation(np.repeat([0, 1, 2], [30, 20, 10]))
    soft = [_softness_file(tmp_path / f"s{k}.h5", temp, rng.normal(species - 1.0 + 0.1 * k, 0.3, (40, 60)),
                           species, XYZ) for k, temp in enumerate([3000.0, 4000.0])]
    fig = plotting.softness_distribution_from_files(soft)
    assert [ax.get_title() for ax in fig.axes] == list(XYZ)
    for sp, ax in enumerate(fig.axes):  # <S> of species k near k - 1 (+ 0.1 per temperature)
        means = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        assert_allclose(means, [sp - 1.0, sp - 0.9], atol=0.03)

    fig = plotting.classifier_from_file(_model_file(tmp_path / "model.h5", XYZ))
    sc = _series(fig.axes[0])
    for sp, name in enumerate(XYZ):
        assert_allclose(sc[f"{name}, cross-validation"][1], 0.6 + 0.05 * sp + np.array([0.0, 0.02, 0.01]))


def test_pair_correlation_of_a_three_species_ideal_gas_from_trajectories(tmp_path):
    """g(r) for every one of the 6 pairs of X, Y, Z; for an ideal gas each is 1 at large r (no
    correlation), within the counting noise."""
    rng = np.random.default_rng(7)
    box, counts = 18.0, [100, 150, 250]
    species = rng.permutation(np.repeat([0, 1, 2], counts))
    paths = [_trajectory_file(tmp_path / f"T{temp}.h5", rng.uniform(0, box, (12, sum(counts), 3)), species,
                              XYZ, box, temp) for temp in (3000.0, 2000.0)]
    fig = _saved(plotting.pair_correlation_from_files(paths, n_frames=12, r_max_A=8.0, dr_A=0.5), tmp_path)
    assert [ax.get_title() for ax in fig.axes] == ["X-X", "X-Y", "X-Z", "Y-Y", "Y-Z", "Z-Z"]
    for ax in fig.axes:
        lines = [ln for ln in ax.get_lines() if ln.get_label() in ("2000 K", "3000 K")]
        assert [ln.get_label() for ln in lines] == ["2000 K", "3000 K"]  # sorted by temperature
        for ln in lines:
            r, g = np.asarray(ln.get_xdata()), np.asarray(ln.get_ydata())
            assert_allclose(g[r > 3.0].mean(), 1.0, atol=0.03)
            assert np.all(g[r > 3.0] > 0.7) and np.all(g[r > 3.0] < 1.3)
    assert _legend(fig.axes[2]) == ["2000 K", "3000 K"]


def test_silica_products_keep_todays_figures(tmp_path):
    """Silica (Si, O): two panels titled Si and O, Si blue circles, O vermillion squares, g(r) of
    Si-Si, Si-O and O-O, temperatures in K only (no reduced axis)."""
    t = np.linspace(2500, 5000, 6)
    s = np.tile(np.linspace(-2, 2, 8), (2, 1))
    path = tmp_path / "arrhenius.h5"
    _synthetic_arrhenius(path, t, s, SILICA, system="silica")
    fig = plotting.rearrangement_probability_from_file(path)
    assert [ax.get_title() for ax in fig.axes] == ["Si", "O"]
    for ax in fig.axes:
        assert [c.get_xlabel() for c in ax.child_axes] == ["T (K)"]
        assert_allclose(ax.child_axes[0].get_xticks(), [3000, 4000, 5000])
    tau, diff = _synthetic_dynamics(t)
    dyn = [tmp_path / f"d{k}.h5" for k in range(t.size)]
    for k in range(t.size):
        _dynamics_file(dyn[k], t[k], tau[k], diff[k], SILICA, system="silica")
    fig = plotting.relaxation_from_files(dyn, path)
    assert _species_series(fig.axes[0], SILICA) == [("#0072B2", "o"), ("#D55E00", "s")]
    assert [c.get_xlabel() for c in fig.axes[0].child_axes] == ["T (K)"]
    fig = plotting.barriers_from_file(path)
    assert [c.get_ylabel() for c in fig.axes[0].child_axes] == ["(K)"]
    fig = plotting.crossover_from_file(path)
    assert fig.axes[0].child_axes == [] and fig.axes[0].get_xlabel() == "T (K)"

    rng = np.random.default_rng(8)
    species = np.repeat([0, 1], [20, 40])
    traj = _trajectory_file(tmp_path / "traj.h5", rng.uniform(0, 12.0, (2, 60, 3)), species, SILICA, 12.0,
                            3000.0, system="silica")
    fig = plotting.pair_correlation_from_files([traj], r_max_A=5.0, dr_A=0.25)
    assert [ax.get_title() for ax in fig.axes] == ["Si-Si", "Si-O", "O-O"]
    assert _legend(fig.axes[2]) == ["3000 K"]


def _reduced_tick_positions(ax, sec, parent_of):
    """Display x of each tick of the secondary axis ``sec``, and of the parent value it stands for
    (the figure drawn)."""
    ticks = [v for v in sec.get_xticks() if np.isfinite(parent_of(v))]
    lo, hi = sorted(ax.get_xlim())
    ticks = [v for v in ticks if lo <= parent_of(v) <= hi]
    on_sec = [sec.transData.transform((v, 0.5))[0] for v in ticks]
    on_parent = [ax.transData.transform((parent_of(v), 0.5))[0] for v in ticks]
    return np.array(ticks), np.array(on_sec), np.array(on_parent)


def test_kob_andersen_products_get_a_reduced_temperature_axis(tmp_path):
    """KA (A, B): every temperature axis also reads in T* = T / (eps / k_B), from REDUCED_UNITS;
    the tick T* sits where the K axes put T = T* eps / k_B."""
    unit = systems.get("kob_andersen").REDUCED_UNITS["temperature_K"]
    names = systems.get("kob_andersen").SPECIES_NAMES
    t = unit * np.array([0.45, 0.5, 0.6, 0.7, 0.85, 1.0])
    s = np.tile(np.linspace(-2, 2, 8), (2, 1))
    path = tmp_path / "arrhenius.h5"
    _synthetic_arrhenius(path, t, s, names, system="kob_andersen")

    def reduced_axis(ax):
        (sec,) = [c for c in ax.child_axes if "T^*" in c.get_xlabel()]
        return sec

    fig = _saved(plotting.rearrangement_probability_from_file(path), tmp_path, "pr")
    fig.draw_without_rendering()
    assert [ax.get_title() for ax in fig.axes] == list(names)
    for ax in fig.axes:
        ticks, on_sec, on_parent = _reduced_tick_positions(ax, reduced_axis(ax), lambda v: 1e3 / (v * unit))
        assert ticks.size >= 2
        assert_allclose(on_sec, on_parent, atol=1e-6)
        # the T (K) axis gets round kelvins even for a cold system
        (kelvin,) = [c for c in ax.child_axes if c.get_xlabel() == "T (K)"]
        assert len(kelvin.get_xticks()) >= 2 and np.all(np.asarray(kelvin.get_xticks()) % 1 == 0)
    # the data: at T = 0.5 eps / k_B the reduced axis reads 0.5
    ax = fig.axes[0]
    sec = reduced_axis(ax)
    assert_allclose(sec.transData.inverted().transform(ax.transData.transform((1000.0 / t[1], 0.5)))[0],
                    t[1] / unit, rtol=1e-9)

    fig = plotting.crossover_from_file(path)
    fig.draw_without_rendering()
    for ax in fig.axes:
        ticks, on_sec, on_parent = _reduced_tick_positions(ax, reduced_axis(ax), lambda v: v * unit)
        assert ticks.size >= 2
        assert_allclose(on_sec, on_parent, atol=1e-6)
    fig = plotting.barriers_from_file(path)
    fig.draw_without_rendering()
    ax_e = fig.axes[0]
    (right,) = ax_e.child_axes
    assert "reduced" in right.get_ylabel()
    e_ev = 0.05  # eV on the left is e_ev * (K per eV) / (eps / k_B) on the right
    assert_allclose(right.transData.inverted().transform(ax_e.transData.transform((0, e_ev)))[1],
                    e_ev * units.eV_to_K(1.0) / unit, rtol=1e-9)

    # dynamics products that name the system only in their stored config
    tau, diff = _synthetic_dynamics(t)
    dyn = [tmp_path / f"d{k}.h5" for k in range(t.size)]
    for k in range(t.size):
        _dynamics_file(dyn[k], t[k], tau[k], diff[k], names, config_system="kob_andersen")
    fig = _saved(plotting.relaxation_from_files(dyn), tmp_path, "relaxation")
    fig.draw_without_rendering()
    for ax in fig.axes:
        ticks, on_sec, on_parent = _reduced_tick_positions(ax, reduced_axis(ax), lambda v: 1e3 / (v * unit))
        assert ticks.size >= 2
        assert_allclose(on_sec, on_parent, atol=1e-6)

    # temperature labels carry T* too
    rng = np.random.default_rng(9)
    species = np.repeat([0, 1], [40, 10])
    traj = _trajectory_file(tmp_path / "traj.h5", rng.uniform(0, 10.0, (2, 50, 3)), species, names, 10.0,
                            t[1], system="kob_andersen")
    fig = plotting.pair_correlation_from_files([traj], r_max_A=4.0, dr_A=0.25)
    assert [ax.get_title() for ax in fig.axes] == ["A-A", "A-B", "B-B"]
    assert _legend(fig.axes[2]) == [f"{t[1]:g} K (T* = {t[1] / unit:.3g})"]
    soft = _softness_file(tmp_path / "s.h5", t[1], rng.normal(0, 1, (5, 50)), species, names,
                          system="kob_andersen")
    fig = plotting.softness_distribution_from_files([soft])
    assert _legend(fig.axes[0]) == [f"{t[1]:g} K (T* = 0.5)"]
    fig = plotting.classifier_from_file(_model_file(tmp_path / "model.h5", names, system="kob_andersen"))
    assert fig.axes[0].get_title() == f"trained at 3000 K (T* = {3000 / unit:.3g})"


def test_species_names_come_from_the_products_with_clear_errors(tmp_path):
    t = np.linspace(2500, 5000, 4)
    tau, diff = _synthetic_dynamics(t)
    path = tmp_path / "arrhenius.h5"
    _synthetic_arrhenius(path, t, np.tile(np.linspace(-2, 2, 4), (2, 1)), SILICA)
    dyn = [tmp_path / f"d{k}.h5" for k in range(t.size)]
    for k in range(t.size):
        _dynamics_file(dyn[k], t[k], tau[k], diff[k], ("A", "B"))
    with pytest.raises(SoftnessError, match=r"arrhenius file .*arrhenius.h5 names its species Si, O but"):
        plotting.relaxation_from_files(dyn, path)
    _dynamics_file(dyn[0], t[0], tau[0], diff[0], ("A", "C"))
    with pytest.raises(SoftnessError, match=r"dynamics file .*d1.h5 names its species A, B but .*d0.h5"):
        plotting.read_dynamics(dyn)
    with h5py.File(dyn[0], "a") as f:
        del f["species_names"]
    with pytest.raises(SoftnessError, match=r"dynamics file .*d0.h5 has no '/species_names'"):
        plotting.read_dynamics(dyn)
    with h5py.File(path, "a") as f:
        f.attrs["system"] = "argon_crystal"
    with pytest.raises(SoftnessError, match=r"arrhenius.h5 was made for the unknown system 'argon_crystal'"):
        plotting.read_arrhenius(path)
    with pytest.raises(SoftnessError, match="has 2 species but 3 species names"):
        plotting.relaxation_figure(t, tau, diff, species_names=XYZ)


def test_species_styles_differ_for_many_species():
    styles = {(plotting.species_colour(k), plotting.species_marker(k)) for k in range(40)}
    assert len(styles) == 40
    assert plotting.pair_names(XYZ) == ["X-X", "X-Y", "X-Z", "Y-Y", "Y-Z", "Z-Z"]
    # four species: ten g(r) panels, no empty ones
    r = np.linspace(0.1, 5, 20)
    fig = plotting.pair_correlation_figure([3000.0], r, np.ones((1, 10, r.size)), species_names="ABCD")
    assert [ax.get_title() for ax in fig.axes] == plotting.pair_names("ABCD")


# ---------------------------------------------------------------------------- notebooks

def test_notebook_inputs_come_from_results_when_opened_by_hand(tmp_path, monkeypatch):
    for temp in (3000, 4000):
        (tmp_path / "results" / f"T{temp}").mkdir(parents=True)
        (tmp_path / "results" / f"T{temp}" / "dynamics.h5").touch()
    (tmp_path / "workflow" / "notebooks").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "workflow" / "notebooks")
    inputs, outputs = plotting.notebook_io("relaxation")
    assert outputs == []
    assert [p.split("/")[-2] for p in inputs["dynamics"]] == ["T3000", "T4000"]
    assert inputs["arrhenius"].endswith("results/arrhenius.h5")
    assert plotting.notebook_io("crossover")[0] == {"arrhenius": inputs["arrhenius"]}


def test_every_notebook_is_valid_and_calls_existing_plotting_functions():
    from pathlib import Path

    notebooks = sorted((Path(__file__).resolve().parents[1] / "workflow" / "notebooks").glob("*.py.ipynb"))
    assert {p.name.removesuffix(".py.ipynb") for p in notebooks} == set(plotting.FIGURE_INPUTS)
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        name = path.name.removesuffix(".py.ipynb")
        assert f'notebook_io("{name}", snakemake)' in code
        for call in [w.split("(")[0] for w in code.split("plotting.")[1:]]:
            assert hasattr(plotting, call), (path.name, call)
