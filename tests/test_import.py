"""``softness import``: trajectories made elsewhere, read with MDAnalysis / gsd / ASE.

Reference: a known unwrapped path (a random walk whose atoms cross the box, some many
times) written as one of our trajectories, then exported with the formats' own writers
(MDAnalysis for XTC + GRO and H5MD, gsd for GSD, ASE for extended XYZ, a ten-line LAMMPS-dump
writer here) and imported. The import must give back the true unwrapped paths, to the
precision of each format: text formats keep 6 decimals (1e-4 A here), XTC keeps 1e-3 nm
(its coordinates are rounded to 0.01 A, so 6e-3 A with float32 on top), and p_hop of the
import must equal p_hop of the original to the same precision.
"""

from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from numpy.testing import assert_allclose, assert_array_equal

from softness import cli, hops
from softness.errors import SoftnessError
from softness.importer import SAFE_STEP_FRACTION, import_trajectory, universe
from softness.io import atomic_h5
from softness.trajectory import H5MDWriter, read_trajectory

BOX = np.array([10.0, 11.0, 12.0])
NAMES = ("Si", "O")
SPECIES = np.array([0, 1, 1] * 8, dtype=np.int32)  # 24 atoms
N, F = len(SPECIES), 40
DT_FS, STEPS = 50.0, 100  # frame interval, MD steps per frame
MASSES = np.where(SPECIES == 0, 28.085, 15.999)
H = 4  # p_hop half window (frames)
TEXT_TOL = 1e-4  # A, six decimals of text formats
XTC_TOL = 6e-3  # A, XTC's 1e-3 nm precision (0.005 A rounding) plus float32


def true_paths(seed=0, n_frames=F, scale=0.25, drift=0.3):
    """[F, N, 3] unwrapped path: a random walk, a quarter of the atoms drifting across the box."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=scale, size=(n_frames, N, 3))
    steps[:, ::4] += drift  # 12 A over the run: crosses every edge
    steps[0] = 0.0
    return rng.uniform(0, 1, size=(N, 3)) * BOX + np.cumsum(steps, axis=0)


def split(u, box=BOX):
    images = np.floor(u / box).astype(np.int32)
    return u - images * box, images


def write_native(path, u):
    wrapped, images = split(u)
    with atomic_h5(path, "test", {}) as f:
        f.attrs["temperature_K"] = 3000.0
        w = H5MDWriter(f, SPECIES, MASSES, BOX, species_names=NAMES)
        w.append(np.arange(len(u)) * STEPS, np.arange(len(u)) * DT_FS, wrapped, images)


def write_lammps_dump(path, u, *, columns="image", n_atoms=None, steps=None, lo=(-5.0, 0.0, 2.0),
                      triclinic=False, nan_at=None):
    """A LAMMPS dump of ``u`` (atoms in a shuffled order, types 1 = Si and 2 = O, box from ``lo``)."""
    wrapped, images = split(u)
    lo = np.asarray(lo)
    order = np.random.default_rng(5).permutation(N)
    steps = np.arange(len(u)) * STEPS if steps is None else steps
    with open(path, "w") as f:
        for k in range(len(u)):
            n = N if n_atoms is None or k < 2 else n_atoms
            f.write(f"ITEM: TIMESTEP\n{steps[k]}\nITEM: NUMBER OF ATOMS\n{n}\n")
            if triclinic:
                f.write("ITEM: BOX BOUNDS xy xz yz pp pp pp\n")
                f.writelines(f"{lo[d]} {lo[d] + BOX[d] + (1.0 if d == 0 else 0.0)} "
                             f"{1.0 if d == 0 else 0.0}\n" for d in range(3))
            else:
                f.write("ITEM: BOX BOUNDS pp pp pp\n")
                f.writelines(f"{lo[d]} {lo[d] + BOX[d]}\n" for d in range(3))
            cols = {"image": "x y z ix iy iz", "unwrapped": "xu yu zu", "wrapped": "x y z"}[columns]
            f.write(f"ITEM: ATOMS id type {cols}\n")
            for i in order[:n]:
                x = (u[k, i] if columns == "unwrapped" else wrapped[k, i]) + lo
                xs = " ".join(f"{v:.6f}" for v in x)
                if nan_at == (k, i):
                    xs = "nan " + " ".join(f"{v:.6f}" for v in x[1:])
                extra = " ".join(str(v) for v in images[k, i]) if columns == "image" else ""
                f.write(f"{i + 1} {SPECIES[i] + 1} {xs} {extra}\n")


def write_gsd(path, u, *, tilt=0.0, images=True):
    import gsd.hoomd

    wrapped, img = split(u)
    with gsd.hoomd.open(str(path), "w") as t:
        for k in range(len(u)):
            fr = gsd.hoomd.Frame()
            fr.configuration.step = k * STEPS
            fr.configuration.box = [*BOX, tilt, 0, 0]
            fr.particles.N = N
            fr.particles.types = list(NAMES)
            fr.particles.typeid = SPECIES
            fr.particles.position = (wrapped[k] - BOX / 2).astype(np.float32)  # HOOMD: [-L/2, L/2)
            if images:
                fr.particles.image = img[k]
            t.append(fr)


def mda_universe(u, *, dt_ps=DT_FS / 1000.0, dims=(*BOX, 90.0, 90.0, 90.0)):
    import MDAnalysis as mda
    from MDAnalysis.coordinates.memory import MemoryReader

    names = np.array(NAMES)[SPECIES]
    m = mda.Universe.empty(N, n_residues=N, atom_resindex=np.arange(N), trajectory=True)
    m.add_TopologyAttr("names", names)
    m.add_TopologyAttr("resnames", ["SIO"] * N)
    m.add_TopologyAttr("resids", np.arange(1, N + 1))
    wrapped, _ = split(u)
    m.load_new(wrapped.astype(np.float32), format=MemoryReader, dimensions=np.array(dims), dt=dt_ps)
    return m


def write_xtc(dirpath, u, **kw):
    import MDAnalysis as mda

    m = mda_universe(u, **kw)
    m.atoms.write(str(dirpath / "top.gro"))
    with mda.Writer(str(dirpath / "traj.xtc"), N) as w:
        for _ in m.trajectory:
            w.write(m.atoms)
    return dirpath / "traj.xtc", dirpath / "top.gro"


def write_mda_h5md(dirpath, u):
    import MDAnalysis as mda

    m = mda_universe(u)
    m.atoms.write(str(dirpath / "top.gro"))
    with mda.Writer(str(dirpath / "other.h5md"), N, lengthunit="Angstrom", timeunit="ps") as w:
        for _ in m.trajectory:
            w.write(m.atoms)
    return dirpath / "other.h5md", dirpath / "top.gro"


def write_extxyz(path, u):
    import ase
    import ase.io

    wrapped, _ = split(u)
    frames = [ase.Atoms(symbols=list(np.array(NAMES)[SPECIES]), positions=wrapped[k], cell=np.diag(BOX),
                        pbc=True) for k in range(len(u))]
    ase.io.write(str(path), frames, format="extxyz")


LAMMPS_MAP = {"1": "Si", "2": "O"}
NAME_MAP = {"Si": "Si", "O": "O"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("ref")
    u = true_paths()
    write_native(d / "native.h5", u)
    native = read_trajectory(d / "native.h5")
    assert np.any(native.images != 0) and np.abs(native.images).max() >= 1
    p = hops.p_hop(native.positions, H, images=native.images, box=native.box)
    return d, u, p


def _file(write, name, **kw):
    """A CASES writer: ``write(dir / name, u, **kw)``, no topology."""
    def make(d, u, ref):
        write(d / name, u, **kw)
        return d / name, None
    return make


CASES = {  # name -> (writer(dir, u, reference dir) -> (path, topology), species map, frame interval,
    #                 tolerance in A, how the paths are unwrapped)
    "lammps-images": (_file(write_lammps_dump, "a.lammpstrj"), LAMMPS_MAP, DT_FS, TEXT_TOL, "image flags"),
    "lammps-unwrapped": (_file(write_lammps_dump, "b.dump", columns="unwrapped"), LAMMPS_MAP, DT_FS, TEXT_TOL,
                         "unwrapped coordinates"),
    "lammps-wrapped-only": (_file(write_lammps_dump, "c.lammpstrj", columns="wrapped"), LAMMPS_MAP, DT_FS,
                            TEXT_TOL, "minimum image"),
    "gsd": (_file(write_gsd, "t.gsd"), NAME_MAP, DT_FS, 1e-5, "image flags"),
    "gsd-no-images": (_file(write_gsd, "n.gsd", images=False), NAME_MAP, DT_FS, 1e-5, "minimum image"),
    "xtc+gro": (lambda d, u, ref: write_xtc(d, u), NAME_MAP, None, XTC_TOL, "minimum image"),
    "extxyz": (_file(write_extxyz, "t.extxyz"), NAME_MAP, DT_FS, TEXT_TOL, "minimum image"),
    "h5md-ours": (lambda d, u, ref: (ref / "native.h5", None), NAME_MAP, None, 1e-5, "image flags"),
    "h5md-mdanalysis": (lambda d, u, ref: write_mda_h5md(d, u), NAME_MAP, None, 1e-5, "minimum image"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_gives_the_true_paths_and_the_same_p_hop(case, reference, tmp_path):
    d, u, p_native = reference
    writer, species_map, dt, tol, how = CASES[case]
    traj_path, topology = writer(tmp_path, u, d)
    out = tmp_path / "imported.h5"
    summary = import_trajectory(traj_path, out=out, species_map=species_map, temperature_K=3000.0,
                                frame_interval_fs=dt, topology=topology)
    assert summary["coordinates"] == how
    t = read_trajectory(out)
    assert t.species_names == NAMES
    assert_array_equal(t.species, SPECIES)
    assert_allclose(t.masses, MASSES, atol=0.01)  # element masses
    assert_allclose(t.box, np.broadcast_to(BOX, (F, 3)), rtol=1e-6)
    assert_allclose(t.time_fs, np.arange(F) * DT_FS, atol=1e-3)  # file times (XTC, H5MD) or the interval
    assert np.all((t.positions >= 0) & (t.positions < BOX))
    assert_allclose(t.unwrapped(), u, rtol=0, atol=tol)
    p = hops.p_hop(t.positions, H, images=t.images, box=t.box)
    ok = ~np.isnan(p_native)
    assert_array_equal(np.isnan(p), ~ok)
    # p_hop ~ (displacement)^2: its error is ~ 2 sqrt(p) * tol
    assert_allclose(p[ok], p_native[ok], rtol=0, atol=4 * tol * (1 + np.sqrt(p_native[ok].max())))
    with h5py.File(out, "r") as f:
        assert f.attrs["temperature_K"] == 3000.0
        assert f.attrs["source_file"] == str(Path(traj_path).resolve())
        assert f.attrs["stage"] == "import"
        assert f.attrs["frame_interval_fs"] == pytest.approx(DT_FS, rel=1e-6)


def test_dense_frames_without_images_unwrap_to_the_true_paths_over_many_boxes(tmp_path):
    """Drift of 0.2 L per frame: 8 box lengths in 40 frames, under the 0.25 L limit."""
    u = true_paths(seed=3, scale=0.1, drift=0.2 * BOX.min())
    write_lammps_dump(tmp_path / "w.lammpstrj", u, columns="wrapped")
    import_trajectory(tmp_path / "w.lammpstrj", out=tmp_path / "o.h5", species_map=LAMMPS_MAP,
                      temperature_K=1.0, frame_interval_fs=DT_FS)
    t = read_trajectory(tmp_path / "o.h5")
    assert np.abs(t.images).max() >= 7
    assert_allclose(t.unwrapped(), u, rtol=0, atol=TEXT_TOL)


def one_sentence(exc_info, path):
    msg = str(exc_info.value)
    assert "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0, msg
    assert str(path) in msg, msg
    return msg


def nothing_written(tmp_path, out):
    assert not out.exists()
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_sparse_frames_without_images_are_refused(tmp_path):
    u = true_paths(seed=4, scale=1.5, drift=0.0)[::4]  # steps of ~3 A between the kept frames
    write_lammps_dump(tmp_path / "s.lammpstrj", u, columns="wrapped")
    out = tmp_path / "o.h5"
    with pytest.raises(SoftnessError, match="too sparse to unwrap") as e:
        import_trajectory(tmp_path / "s.lammpstrj", out=out, species_map=LAMMPS_MAP, temperature_K=1.0,
                          frame_interval_fs=DT_FS)
    one_sentence(e, tmp_path / "s.lammpstrj")
    nothing_written(tmp_path, out)
    # The same sparse frames with image flags are exact.
    write_lammps_dump(tmp_path / "i.lammpstrj", u, columns="image")
    import_trajectory(tmp_path / "i.lammpstrj", out=out, species_map=LAMMPS_MAP, temperature_K=1.0,
                      frame_interval_fs=DT_FS)
    assert_allclose(read_trajectory(out).unwrapped(), u, atol=TEXT_TOL)


def test_the_limit_is_a_quarter_box():
    assert SAFE_STEP_FRACTION == 0.25


def _bad_inputs(d):
    """name -> (path, kwargs, phrase of the message)."""
    u = true_paths(seed=6, n_frames=8)
    cases = {}
    (d / "junk.lammpstrj").write_text("this is not a trajectory\n" * 5)
    cases["not a trajectory (text)"] = (d / "junk.lammpstrj", {}, "could not be read as LAMMPSDUMP")
    with h5py.File(d / "plain.h5", "w") as f:
        f["x"] = np.arange(3)
    cases["not a trajectory (HDF5)"] = (d / "plain.h5", {}, "is not an H5MD trajectory")
    (d / "junk.gsd").write_bytes(b"\x00" * 100)
    cases["not a trajectory (GSD)"] = (d / "junk.gsd", {}, "could not be read as GSD")
    (d / "t.foo").write_text("1 2 3\n")
    cases["unknown suffix"] = (d / "t.foo", {}, "cannot tell the format")
    write_lammps_dump(d / "ok.lammpstrj", u)
    cases["format MDAnalysis cannot read"] = (d / "ok.lammpstrj", {"format": "NOPE"},
                                              "not one MDAnalysis reads")
    cases["types missing from the map"] = (d / "ok.lammpstrj", {"species_map": {"1": "Si"}},
                                           "atom types 2 of trajectory file")
    write_lammps_dump(d / "n.lammpstrj", u, n_atoms=N - 1)
    cases["changing number of atoms (LAMMPS)"] = (d / "n.lammpstrj", {},
                                                  "changes its number of atoms at frame 2")
    write_gsd(d / "tilted.gsd", u, tilt=0.2)
    cases["non-orthorhombic (GSD)"] = (d / "tilted.gsd", {"species_map": NAME_MAP}, "non-orthorhombic box")
    write_lammps_dump(d / "tri.lammpstrj", u, triclinic=True)
    cases["non-orthorhombic (LAMMPS)"] = (d / "tri.lammpstrj", {}, "non-orthorhombic box")
    xtc, gro = write_xtc(d, u, dims=(*BOX, 90.0, 80.0, 90.0))
    timed = {"species_map": NAME_MAP, "frame_interval_fs": None}  # files that store their times
    cases["non-orthorhombic (XTC)"] = (xtc, {"topology": gro, **timed}, "non-orthorhombic box")
    write_lammps_dump(d / "nan.lammpstrj", u, nan_at=(3, 5))
    cases["NaN coordinates"] = (d / "nan.lammpstrj", {}, "NaN or infinite coordinates at frame 3")
    write_lammps_dump(d / "back.lammpstrj", u, steps=[0, 100, 200, 300, 300, 400, 500, 600])
    cases["non-increasing steps"] = (d / "back.lammpstrj", {}, "non-increasing times: frame 4")
    write_native(d / "ours.h5", u)
    with h5py.File(d / "ours.h5", "a") as f:
        f["particles/all/position/time"][5] = 100.0
    cases["non-increasing times (H5MD)"] = (d / "ours.h5", timed, "non-increasing times: frame 5")
    cases["XTC without topology"] = (xtc, timed, "give a topology")
    cases["no frame interval"] = (d / "ok.lammpstrj", {"frame_interval_fs": None}, "give the frame interval")
    cases["fewer frames than the p_hop window"] = (d / "ok.lammpstrj", {"min_frames": lambda dt: 10},
                                                   "fewer than the 10 of the p_hop window")
    cases["missing file"] = (d / "nope.lammpstrj", {}, "does not exist")
    return cases


BAD = ["not a trajectory (text)", "not a trajectory (HDF5)", "not a trajectory (GSD)", "unknown suffix",
       "format MDAnalysis cannot read", "types missing from the map", "changing number of atoms (LAMMPS)",
       "non-orthorhombic (GSD)", "non-orthorhombic (LAMMPS)", "non-orthorhombic (XTC)", "NaN coordinates",
       "non-increasing steps", "non-increasing times (H5MD)", "XTC without topology", "no frame interval",
       "fewer frames than the p_hop window", "missing file"]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    return _bad_inputs(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_sentence_naming_the_file_and_nothing_is_written(case, bad_inputs, tmp_path):
    path, kw, phrase = bad_inputs[case]
    kw = {"species_map": LAMMPS_MAP, "frame_interval_fs": DT_FS, **kw}
    out = tmp_path / "out.h5"
    with pytest.raises(SoftnessError) as e:
        import_trajectory(path, out=out, temperature_K=1000.0, **kw)
    msg = one_sentence(e, path)
    assert phrase in msg, msg
    nothing_written(tmp_path, out)


def test_frame_interval_is_checked_against_the_file_times(reference, tmp_path):
    d, u, _ = reference
    with pytest.raises(SoftnessError, match="stores frames every 50 fs, not the 20 fs given"):
        import_trajectory(d / "native.h5", out=tmp_path / "o.h5", species_map=NAME_MAP, temperature_K=1.0,
                          frame_interval_fs=20.0)
    assert not (tmp_path / "o.h5").exists()


def test_system_orders_species_and_gives_masses(tmp_path):
    u = true_paths(seed=7, n_frames=6)
    write_lammps_dump(tmp_path / "ka.lammpstrj", u)
    out = tmp_path / "ka.h5"
    # types listed B first: without a system B would be species 0
    import_trajectory(tmp_path / "ka.lammpstrj", out=out, species_map={"2": "B", "1": "A"}, temperature_K=1.0,
                      frame_interval_fs=DT_FS, system="kob_andersen")
    t = read_trajectory(out)
    assert t.species_names == ("A", "B") and t.attrs["system"] == "kob_andersen"
    assert_array_equal(t.species, SPECIES)  # type 1 -> A = 0
    assert_allclose(t.masses, 39.948)
    with pytest.raises(SoftnessError, match="not species of the system 'kob_andersen'"):
        import_trajectory(tmp_path / "ka.lammpstrj", out=tmp_path / "x.h5", species_map=LAMMPS_MAP,
                          temperature_K=1.0, frame_interval_fs=DT_FS, system="kob_andersen")
    import_trajectory(tmp_path / "ka.lammpstrj", out=out, species_map={"2": "B", "1": "A"}, temperature_K=1.0,
                      frame_interval_fs=DT_FS)
    assert read_trajectory(out).species_names == ("B", "A")


def test_cli_import_and_its_p_hop_window_check(reference, tmp_path, capsys):
    d, u, _ = reference
    write_lammps_dump(tmp_path / "a.lammpstrj", u)
    out = tmp_path / "cli.h5"
    rc = cli.main(["import", str(tmp_path / "a.lammpstrj"), "--out", str(out), "--species", "1=Si", "2=O",
                   "--temperature", "2500", "--frame-interval-fs", "50"])
    assert rc == 0
    t = read_trajectory(out)
    assert_allclose(t.unwrapped(), u, atol=TEXT_TOL)
    assert t.attrs["temperature_K"] == 2500.0
    cfg = tmp_path / "long_window.yaml"
    cfg.write_text(yaml.safe_dump({"hops": {"t_R_fs": 5000.0}}))  # 100 frames of 50 fs
    out2 = tmp_path / "cli2.h5"
    rc = cli.main(["import", str(tmp_path / "a.lammpstrj"), "--out", str(out2), "--species", "1=Si", "2=O",
                   "--temperature", "2500", "--frame-interval-fs", "50", "--config", str(cfg)])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and not out2.exists()
    assert err.startswith("softness import: error:") and "\n" not in err
    assert "holds 40 frames, fewer than the 100 of the p_hop window" in err
    rc = cli.main(["import", str(tmp_path / "a.lammpstrj"), "--out", str(out2), "--species", "1:Si",
                   "--temperature", "2500", "--frame-interval-fs", "50"])
    assert rc == 1 and "is not of the form KEY=VALUE" in capsys.readouterr().err


def test_our_trajectory_opens_in_mdanalysis_with_species(reference):
    d, u, _ = reference
    m = universe(d / "native.h5")
    assert m.trajectory.n_frames == F
    assert list(m.atoms.types) == list(np.array(NAMES)[SPECIES])
    assert_allclose(m.atoms.masses, MASSES)
    wrapped, _ = split(u)
    for ts in m.trajectory[::13]:
        assert_allclose(ts.positions, wrapped[ts.frame], atol=1e-5)
        assert_allclose(ts.dimensions, [*BOX, 90, 90, 90])
        assert ts.time == pytest.approx(ts.frame * DT_FS / 1000.0)  # ps


def test_import_rejects_an_unknown_system(tmp_path):
    write_lammps_dump(tmp_path / "a.lammpstrj", true_paths(n_frames=4))
    with pytest.raises(SoftnessError, match="unknown system 'argon'"):
        import_trajectory(tmp_path / "a.lammpstrj", out=tmp_path / "o.h5", species_map=LAMMPS_MAP,
                          temperature_K=1.0, frame_interval_fs=DT_FS, system="argon")


def test_mapped_types_without_atoms_are_not_species(tmp_path):
    write_lammps_dump(tmp_path / "a.lammpstrj", true_paths(n_frames=4))
    import_trajectory(tmp_path / "a.lammpstrj", out=tmp_path / "o.h5", species_map={"3": "C", **LAMMPS_MAP},
                      temperature_K=1.0, frame_interval_fs=DT_FS)
    t = read_trajectory(tmp_path / "o.h5")
    assert t.species_names == NAMES
    assert_array_equal(t.species, SPECIES)


@pytest.mark.parametrize("case", ["lammps-images", "gsd-no-images"])
def test_a_length_unit_scales_positions_box_and_p_hop(case, reference, tmp_path):
    # A file in units of 2 A (as a LAMMPS `units lj` dump is in units of sigma): every length,
    # the box included, doubles, the images and the unwrapping are unchanged and p_hop (a
    # squared length) is 4 x the file's.
    d, u, p_native = reference
    writer, species_map, dt, tol, how = CASES[case]
    traj_path, _ = writer(tmp_path, u, d)
    import_trajectory(traj_path, out=tmp_path / "as_A.h5", species_map=species_map, temperature_K=1.0,
                      frame_interval_fs=dt)
    rc = cli.main(["import", str(traj_path), "--out", str(tmp_path / "in_2A.h5"), "--temperature", "1",
                   "--frame-interval-fs", str(dt), "--length-unit-A", "2", "--species",
                   *(f"{k}={v}" for k, v in species_map.items())])
    assert rc == 0
    plain, scaled = read_trajectory(tmp_path / "as_A.h5"), read_trajectory(tmp_path / "in_2A.h5")
    assert_allclose(scaled.box, 2 * plain.box, rtol=1e-6)
    assert_array_equal(scaled.images, plain.images)
    assert_allclose(scaled.unwrapped(), 2 * u, rtol=0, atol=2 * tol)
    assert scaled.attrs["source_length_unit_A"] == 2.0 and "source_length_unit_A" not in plain.attrs
    p = hops.p_hop(scaled.positions, H, images=scaled.images, box=scaled.box)
    ok = ~np.isnan(p_native)
    assert_allclose(p[ok], 4 * p_native[ok], rtol=0, atol=16 * tol * (1 + np.sqrt(p_native[ok].max())))
    with pytest.raises(SoftnessError, match="length unit must be a positive number of Angstrom"):
        import_trajectory(traj_path, out=tmp_path / "x.h5", species_map=species_map, temperature_K=1.0,
                          frame_interval_fs=dt, length_unit_A=0.0)
    assert not (tmp_path / "x.h5").exists()
