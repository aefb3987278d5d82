"""`softness export` and the softness slab figure, against the products' arrays and planted jumps.

A small run is made here: a trajectory of atoms rattling in their cages (0.03 A) in which a few
atoms make planted cage jumps of 1.6 A at known frames (some across the periodic boundary), its
hops file from the real ``hops_file`` stage, and a softness file on every second frame (the
feature frames) with the layout ``softness apply`` writes.
"""

import copy

import ase.io
import h5py
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, config
from softness.errors import SoftnessError
from softness.export import about_to_rearrange, export_frames, frame_data, parse_frames
from softness.hops import hops_file
from softness.io import atomic_h5
from softness.plotting import slab_mask, softness_slab_figure, softness_slab_from_files
from softness.trajectory import H5MDWriter, read_trajectory

BOX = 10.0
DT_FS = 20.0
N_FRAMES = 60
N_ATOMS = 24
#: (atom, frame of the jump, jump vector): each atom jumps between frame t - 1 and t.
JUMPS = [(3, 20, (1.6, 0.0, 0.0)), (7, 31, (0.0, -1.6, 0.0)), (11, 40, (0.0, 0.0, 1.6)),
         (17, 26, (-1.6, 0.0, 0.0))]
DRIFTER = 5  #: an atom that drifts through the box
WINDOW_FRAMES = 10  # arrhenius.P_R_window_fs = 200 fs (the default) at 20 fs per frame


def _cfg(names):
    cfg = copy.deepcopy(config.load(None))
    cfg["hops"].update({"t_R_fs": 200.0, "t_quiet_fs": 200.0, "p_c_A2": {n: 1.0 for n in names},
                        "p_quiet_A2": {n: 0.3 for n in names}})
    return cfg


def true_paths(seed=0):
    """[F, N, 3] unwrapped paths: cage centres (some next to a face of the box), vibrations, jumps."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.0, BOX, (N_ATOMS, 3))
    centres[3, 0], centres[17, 0], centres[11, 2] = BOX - 0.5, 0.4, BOX - 0.7  # jumps across faces
    x = centres[None] + rng.normal(0.0, 0.03, (N_FRAMES, N_ATOMS, 3))
    for atom, t, jump in JUMPS:
        x[t:, atom] += jump
    x[:, DRIFTER] += np.linspace(0.0, 2.5 * BOX, N_FRAMES)[:, None] * [0, 1, 0]  # crosses many images
    return x


def make_run(tmp_path, names=("Si", "O"), temperature=3000.0, system="silica", seed=0, wrapped=True):
    """Trajectory, hops and softness files of one synthetic run; returns their paths and the truth.

    ``wrapped=False`` stores the unwrapped paths with zero image flags (another writer's convention).
    """
    tmp_path.mkdir(parents=True, exist_ok=True)
    x = true_paths(seed)
    species = (np.arange(N_ATOMS) % 3 == 0).astype(np.int32)  # 0, 1, 1, 0, ...: species 1 twice as many
    species = 1 - species
    images = np.floor(x / BOX).astype(np.int32) if wrapped else np.zeros(x.shape, np.int32)
    traj = tmp_path / "trajectory.h5"
    with atomic_h5(traj, "run", {}) as f:
        f.attrs["temperature_K"] = temperature
        f.attrs["system"] = system
        w = H5MDWriter(f, species, np.full(N_ATOMS, 20.0), [BOX] * 3, species_names=names)
        w.append(np.arange(N_FRAMES) * 10, np.arange(N_FRAMES) * DT_FS, x - images * BOX, images)
    hops = tmp_path / "hops.h5"
    hops_file(_cfg(names), traj, hops)
    soft = tmp_path / "softness.h5"
    frames = np.arange(0, N_FRAMES, 2)
    rng = np.random.default_rng(seed + 1)
    with atomic_h5(soft, "apply", _cfg(names)) as f:
        f.attrs["temperature_K"] = temperature
        f.attrs["system"] = system
        f["frames"] = frames
        f["step"] = frames * 10
        f["time_fs"] = frames * DT_FS
        f["species"] = species.astype(np.int64)
        f["species_names"] = np.array([n.encode() for n in names], dtype="S")
        f["softness"] = rng.normal(0.0, 1.0, (frames.size, N_ATOMS)).astype(np.float32)
    return {"trajectory": traj, "hops": hops, "softness": soft, "x": x, "species": species, "names": names}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("run"))


def _products(path):
    with h5py.File(path, "r") as f:
        return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}


def brute_force_about_to_rearrange(frames, events, window):
    """1 / 0 / -1 from the hops events, literally: every frame f, every atom, every frame of its window."""
    n_hops, n_atoms = events.shape
    out = np.zeros((len(frames), n_atoms), np.int8)
    for k, f in enumerate(frames):
        for i in range(n_atoms):
            rows = range(f, f + window)
            if f + window > n_hops or any(events[g, i] == -1 for g in rows):
                out[k, i] = -1
            else:
                out[k, i] = int(any(events[g, i] == 1 for g in rows))
    return out


# ---------------------------------------------------------------------------- extxyz

def test_extxyz_holds_the_products_values_at_every_softness_frame(run, tmp_path):
    out = tmp_path / "frames.extxyz"
    info = export_frames(run["trajectory"], run["softness"], run["hops"], out, unwrapped=True)
    soft, hops = _products(run["softness"]), _products(run["hops"])
    traj = read_trajectory(run["trajectory"])
    assert_array_equal(info["frames"], soft["frames"])
    images = ase.io.read(out, ":", format="extxyz")
    assert len(images) == soft["frames"].size
    names = np.array(run["names"])[run["species"]]
    for k, (atoms, f) in enumerate(zip(images, soft["frames"], strict=True)):
        assert atoms.get_chemical_symbols() == names.tolist()
        assert_array_equal(atoms.arrays["species_id"], run["species"])
        assert_allclose(atoms.cell.array, np.diag([BOX] * 3))
        assert atoms.pbc.all()
        assert_allclose(atoms.positions, traj.positions[f], atol=2e-5)
        assert np.all((atoms.positions >= 0) & (atoms.positions < BOX))
        # The exact unwrapped path, both from the image flags and from the extra column.
        assert_allclose(atoms.positions + atoms.arrays["image"] * BOX, run["x"][f], atol=5e-5)
        assert_allclose(atoms.arrays["unwrapped"], run["x"][f], atol=5e-5)
        assert_allclose(atoms.arrays["softness"], soft["softness"][k], atol=1e-7)
        row = int(np.flatnonzero(hops["frames"] == f)[0])
        assert_allclose(atoms.arrays["p_hop"], hops["p_hop"][row], rtol=1e-6, atol=1e-7, equal_nan=True)
        assert_array_equal(atoms.arrays["rearranging"], hops["labels"][row] == 1)
        assert_array_equal(atoms.arrays["quiet"], hops["labels"][row] == 0)
        assert atoms.info["time_fs"] == pytest.approx(f * DT_FS)
        assert atoms.info["frame"] == f
        assert atoms.info["step"] == f * 10
        assert atoms.info["temperature_K"] == pytest.approx(3000.0)
        assert atoms.info["P_R_window_fs"] == pytest.approx(WINDOW_FRAMES * DT_FS)
    # Both labels and NaN p_hop occur, so the comparisons above test something.
    all_p = np.array([a.arrays["p_hop"] for a in images])
    assert np.isnan(all_p).any() and np.isfinite(all_p).any()
    assert sum(a.arrays["rearranging"].sum() for a in images) > 0
    assert sum(a.arrays["quiet"].sum() for a in images) > 0


def test_about_to_rearrange_is_the_P_R_definition_and_finds_the_planted_jumps(run, tmp_path):
    out = tmp_path / "frames.extxyz"
    export_frames(run["trajectory"], run["softness"], run["hops"], out)
    frames = _products(run["softness"])["frames"]
    events = _products(run["hops"])["events"]
    got = np.array([a.arrays["about_to_rearrange"] for a in ase.io.read(out, ":")])
    assert_array_equal(got, brute_force_about_to_rearrange(frames, events, WINDOW_FRAMES))
    # The physics behind it: the events are the planted jumps, so an atom is about to rearrange at
    # frame f exactly when it jumps at some t with f <= t < f + Delta, wherever that is decided.
    truth = np.zeros(got.shape, np.int8)
    for atom, t, _ in JUMPS:
        truth[(frames <= t) & (t < frames + WINDOW_FRAMES), atom] = 1
    decided = got >= 0
    decided[:, DRIFTER] = False  # flows (0.4 A per frame): p_hop stays high, its events are not planted
    assert_array_equal(got[decided], truth[decided])
    assert (got == 1).sum() >= len(JUMPS) * 3 and (got == 0).any() and (got == -1).any()
    # A jump on a frame whose window is complete is always decided.
    for atom, t, _ in JUMPS:
        assert np.any(got[(frames <= t) & (t < frames + WINDOW_FRAMES), atom] == 1)


def test_about_to_rearrange_function_on_an_events_table():
    events = np.array([[-1, -1], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0], [-1, -1]], np.int8)
    hops_frames = np.arange(7)
    frames = np.array([0, 1, 2, 3, 4, 5])
    got = about_to_rearrange(frames, hops_frames, events, 2)
    assert_array_equal(got, brute_force_about_to_rearrange(frames, events, 2))
    assert_array_equal(got[1:5], [[0, 1], [0, 1], [1, 0], [1, 0]])
    # Hops rows that are not consecutive trajectory frames: a window with a missing frame is undecided.
    assert_array_equal(about_to_rearrange([1, 3], np.array([0, 1, 2, 4, 5]), events[:5], 2),
                       [[0, 1], [-1, -1]])


def test_other_frames_and_species_that_are_not_elements(tmp_path):
    run = make_run(tmp_path / "ka", names=("A", "B"), temperature=60.0, system="kob_andersen")
    out = tmp_path / "ka.extxyz"
    info = export_frames(run["trajectory"], run["softness"], run["hops"], out, frames=[3, 4, 10, 3],
                         window_fs=100.0)
    assert_array_equal(info["frames"], [3, 4, 10])
    assert info["P_R_window_fs"] == pytest.approx(100.0)
    images = ase.io.read(out, ":")
    soft = _products(run["softness"])
    for atoms, f in zip(images, [3, 4, 10], strict=True):
        assert set(atoms.get_chemical_symbols()) == {"X"}
        assert_array_equal(atoms.arrays["species_name"], np.array(["A", "B"])[run["species"]])
        assert atoms.info["system"] == "kob_andersen"
        if f % 2:  # not a feature frame: no softness
            assert np.isnan(atoms.arrays["softness"]).all()
        else:
            assert_allclose(atoms.arrays["softness"], soft["softness"][f // 2], atol=1e-7)
    events = _products(run["hops"])["events"]
    got = np.array([a.arrays["about_to_rearrange"] for a in images])
    assert_array_equal(got, brute_force_about_to_rearrange([3, 4, 10], events, 5))


def test_positions_outside_the_box_are_wrapped_keeping_the_path(tmp_path):
    run = make_run(tmp_path / "unwrapped", wrapped=False)
    out = tmp_path / "w.extxyz"
    export_frames(run["trajectory"], run["softness"], run["hops"], out, frames=[0, 30, 59])
    for atoms, f in zip(ase.io.read(out, ":"), [0, 30, 59], strict=True):
        assert np.all((atoms.positions >= 0) & (atoms.positions < BOX))
        assert_allclose(atoms.positions + atoms.arrays["image"] * BOX, run["x"][f], atol=5e-5)
        assert np.abs(atoms.arrays["image"]).max() >= (2 if f == 59 else 0)


# ---------------------------------------------------------------------------- LAMMPS dump

def _read_dump_tables(path):
    """Per frame: (timestep, box edges, column names, table) of a LAMMPS dump, read literally."""
    lines = path.read_text().splitlines()
    frames, i = [], 0
    while i < len(lines):
        assert lines[i] == "ITEM: TIMESTEP"
        step, n = int(lines[i + 1]), int(lines[i + 3])
        edges = [float(lines[i + 5 + d].split()[1]) for d in range(3)]
        cols = lines[i + 8].split()[2:]
        table = np.array([[float(v) for v in ln.split()] for ln in lines[i + 9:i + 9 + n]])
        frames.append((step, edges, cols, table))
        i += 9 + n
    return frames


@pytest.mark.filterwarnings("ignore:Guessed all Masses:UserWarning", "ignore:Reader has no dt:UserWarning")
def test_lammps_dump_reads_back_in_mdanalysis_with_the_same_values(run, tmp_path):
    import MDAnalysis as mda

    out = tmp_path / "frames.dump"
    export_frames(run["trajectory"], run["softness"], run["hops"], out, format="lammps-dump",
                  frames=[10, 20, 30])
    data = frame_data(run["trajectory"], run["softness"], run["hops"], frames=[10, 20, 30])
    u = mda.Universe(str(out), format="LAMMPSDUMP", lammps_coordinate_convention="unscaled",
                     unwrap_images=True)
    assert u.trajectory.n_frames == 3
    assert_array_equal(u.atoms.types.astype(int), run["species"] + 1)
    for k, ts in enumerate(u.trajectory):
        assert_allclose(ts.dimensions[:3], [BOX] * 3, rtol=1e-6)
        assert_allclose(u.atoms.positions, run["x"][[10, 20, 30][k]], atol=1e-4)  # unwrapped by MDAnalysis
    for k, (step, edges, cols, table) in enumerate(_read_dump_tables(out)):
        assert step == [10, 20, 30][k] * 10
        assert_allclose(edges, [BOX] * 3)
        c = {name: table[:, j] for j, name in enumerate(cols)}
        assert_allclose(np.column_stack([c["x"], c["y"], c["z"]]), data.positions[k], atol=1e-6)
        assert_allclose(c["softness"], data.softness[k], atol=1e-6, equal_nan=True)
        assert_allclose(c["p_hop"], data.p_hop[k], rtol=1e-6, equal_nan=True)
        assert_array_equal(c["about_to_rearrange"], data.about_to_rearrange[k])
        assert_array_equal(c["rearranging"], data.labels[k] == 1)
        assert_array_equal(c["quiet"], data.labels[k] == 0)


# ---------------------------------------------------------------------------- the command line

def test_cli_export_with_frame_ranges(run, tmp_path, capsys):
    out = tmp_path / "cli.extxyz"
    rc = cli.main(["export", "--trajectory", str(run["trajectory"]), "--softness", str(run["softness"]),
                   "--hops", str(run["hops"]), "--out", str(out), "--frames", "0:10:4", "12"])
    assert rc == 0, capsys.readouterr().err
    assert [a.info["frame"] for a in ase.io.read(out, ":")] == [0, 4, 8, 12]
    assert_array_equal(parse_frames(["1:7:3,9", "2"]), [1, 4, 9, 2])
    with pytest.raises(SoftnessError, match="--frames 'x'"):
        parse_frames(["x"])


def _copy(src, dst, edit):
    with h5py.File(src, "r") as fi, h5py.File(dst, "w") as fo:
        for k, v in fi.attrs.items():
            fo.attrs[k] = v
        for k in fi:
            fi.copy(k, fo)
        edit(fo)
    return dst


def _bad_inputs(run, tmp_path):
    def replace(name, value):
        def edit(f):
            del f[name]
            f[name] = value
        return edit

    other = make_run(tmp_path / "other", seed=7)
    species = run["species"]
    soft, traj, hops = run["softness"], run["trajectory"], run["hops"]
    return {
        "missing": (dict(softness=tmp_path / "nope.h5"), "does not exist"),
        "not hdf5": (dict(hops=_write(tmp_path / "text.h5", "not a trajectory")), "not a readable HDF5"),
        "wrong kind": (dict(softness=hops), "has no 'softness'"),
        "hot hops": (dict(hops=_copy(hops, tmp_path / "hot.h5",
                                     lambda f: f.attrs.modify("temperature_K", 4000.0))), "4000 K"),
        "renamed": (dict(softness=_copy(soft, tmp_path / "names.h5",
                                        replace("species_names", np.array([b"A", b"B"])))),
                    "names the species"),
        "other atoms": (dict(softness=_copy(soft, tmp_path / "atoms.h5", replace("species", species[::-1]))),
                        "not the"),
        "other times": (dict(softness=_copy(soft, tmp_path / "times.h5",
                                            replace("time_fs", np.arange(30) * 2 * DT_FS + 5.0))),
                        "different runs"),
        "too many frames": (dict(trajectory=_trajectory_prefix(traj, tmp_path / "short.h5", 30)),
                            "different runs"),
        "another run's hops": (dict(hops=other["hops"]), "does not come from trajectory"),
        "frame": (dict(frames=[N_FRAMES]), f"frame {N_FRAMES} is not a frame"),
        "format": (dict(format="pdb"), "not one of"),
    }


def _write(path, text):
    path.write_text(text)
    return path


def _trajectory_prefix(src, dst, n):
    t = read_trajectory(src, frames=slice(0, n))
    with h5py.File(dst, "w") as f:
        f.attrs["temperature_K"] = 3000.0
        w = H5MDWriter(f, t.species, t.masses, t.box[0], species_names=t.species_names)
        w.append(t.step, t.time_fs, t.positions, t.images)
    return dst


def test_bad_inputs_are_refused_with_one_sentence_and_nothing_written(run, tmp_path):
    base = {"trajectory": run["trajectory"], "softness": run["softness"], "hops": run["hops"]}
    for case, (change, message) in _bad_inputs(run, tmp_path).items():
        args = {**base, **change}
        out = tmp_path / f"{case.replace(' ', '_')}.extxyz"
        kwargs = {k: args[k] for k in ("frames", "format") if k in args}
        with pytest.raises(SoftnessError, match=message) as err:
            export_frames(args["trajectory"], args["softness"], args["hops"], out, **kwargs)
        text = str(err.value)
        assert "\n" not in text and text.count(". ") == 0 and text.endswith((".", "?")), (case, text)
        assert not out.exists() and not list(tmp_path.glob(".*.partial")), case


def test_cli_bad_input_exits_1_with_one_line(run, tmp_path, capsys):
    out = tmp_path / "x.extxyz"
    rc = cli.main(["export", "--trajectory", str(run["trajectory"]), "--softness",
                   str(tmp_path / "missing.h5"), "--hops", str(run["hops"]), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1 and "missing.h5 does not exist" in err
    assert not out.exists()


# ---------------------------------------------------------------------------- the slab figure

def _collections(fig):
    ax = fig.axes[0]
    return {c.get_gid(): c for c in ax.collections if c.get_gid()}


def test_slab_figure_draws_exactly_the_atoms_in_the_slab_and_rings_those_about_to_rearrange():
    rng = np.random.default_rng(3)
    n, box = 400, np.array([12.0, 10.0, 8.0])
    pos = rng.uniform(0, 1, (n, 3)) * box + rng.integers(-1, 2, (n, 3)) * box  # some outside the box
    species = rng.integers(0, 3, n)
    softness = rng.normal(0, 1.5, n)
    softness[:5] = np.nan
    ahead = rng.choice([-1, 0, 1], n, p=[0.2, 0.6, 0.2])
    for centre, width in [(None, 2.0), (0.3, 1.5)]:  # the second slab wraps across z = 0
        fig = softness_slab_figure(pos, box, species, softness, ahead, species_names=("Si", "O", "H"),
                                   slab_width_A=width, slab_centre_A=centre, temperature_K=3000.0,
                                   time_fs=120.0, window_fs=200.0)
        zc = box[2] / 2 if centre is None else centre
        dz = np.abs((pos[:, 2] - zc + box[2] / 2) % box[2] - box[2] / 2)
        inside = dz <= width / 2  # brute force
        assert_array_equal(slab_mask(pos, box, slab_width_A=width, slab_centre_A=centre)[0], inside)
        assert 10 < inside.sum() < n
        cols = _collections(fig)
        assert set(cols) == {"species:Si", "species:O", "species:H", "about_to_rearrange"}
        for s, name in enumerate(("Si", "O", "H")):
            mine = inside & (species == s)
            sc = cols[f"species:{name}"]
            offsets = np.asarray(sc.get_offsets())
            assert offsets.shape == (mine.sum(), 2)
            assert_allclose(offsets, pos[mine, :2] % box[:2])
            assert_allclose(np.ma.filled(sc.get_array(), np.nan), softness[mine], equal_nan=True)
            assert sc.norm.vmin == pytest.approx(-sc.norm.vmax)  # centred on S = 0
        ring = np.asarray(cols["about_to_rearrange"].get_offsets())
        want = pos[inside & (ahead == 1), :2] % box[:2]
        assert ring.shape == want.shape
        assert_allclose(ring, want)
        title = fig.axes[0].get_title()
        assert "3000 K" in title and "120 fs" in title
        assert fig.axes[1].get_ylabel() == "softness S"  # the colour bar


def test_slab_figure_from_files_matches_the_exported_frame(run, tmp_path):
    fig = softness_slab_from_files(run["trajectory"], run["softness"], run["hops"], slab_width_A=4.0)
    fig.savefig(tmp_path / "slab.png")
    cols = _collections(fig)
    title = fig.axes[0].get_title()
    t_fs = float(title.split("t = ")[1].split(" fs")[0])
    frame = int(round(t_fs / DT_FS))
    assert frame % 2 == 0  # a softness frame
    data = frame_data(run["trajectory"], run["softness"], run["hops"], frames=[frame])
    assert (data.about_to_rearrange[0] >= 0).all()  # the default frame is a decided one
    inside = np.abs((data.positions[0, :, 2] - BOX / 2 + BOX / 2) % BOX - BOX / 2) <= 2.0
    for s, name in enumerate(run["names"]):
        assert len(cols[f"species:{name}"].get_offsets()) == (inside & (run["species"] == s)).sum()
    ring = np.asarray(cols["about_to_rearrange"].get_offsets())
    assert len(ring) == (inside & (data.about_to_rearrange[0] == 1)).sum()
    with pytest.raises(SoftnessError, match="is not a softness frame"):
        softness_slab_from_files(run["trajectory"], run["softness"], run["hops"], frame=3)
