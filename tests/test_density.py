"""Density validation, per-compartment assignment, age model (femur.geometry.density);
T-score targeting (femur.workflows.t_score)."""

import numpy as np
import pytest

import femur  # noqa: F401  (MPI before dolfinx)
import dolfinx
from mpi4py import MPI

from femur.geometry import density
from femur.geometry.density import assign_density, density_for_age, validate_density
from femur.outcomes import dxa
from femur.outcomes.references import t_score
from femur.workflows.t_score import bone_with_t_score
from femur.core.errors import DensityError, InputError
from femur.geometry.bone import Bone

from _bones import tagged_box


def slab_bone(kind="vertebra", thickness_mm=10.0, layers=False):
    """Tagged box (tests/_bones.py), AP thickness ``thickness_mm``, axis z."""
    return tagged_box("slab", kind, thickness_mm=thickness_mm, layers=layers,
                      landmarks={"axis": np.array([0.0, 0.0, 1.0])})


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "values, pattern",
    [
        ([0.2, -0.05, 1.0], "negative"),
        ([0.2, np.nan], "NaN"),
        ([0.2, np.inf], "NaN or infinite"),
        ([0.2, 2.5], "exceed 2.3"),
        ([-1000.0, 50.0, 1200.0], "Hounsfield"),
        ([200.0, 2900.0], "Hounsfield"),
        ([150.0, 800.0, 1100.0], "mg/cm3"),
        ([-20.0, 180.0], "mg/cm3"),
    ],
)
def test_validate_density_rejects(values, pattern):
    with pytest.raises(DensityError, match=pattern) as err:
        validate_density(values, name="my_field")
    assert "my_field" in str(err.value)


def test_validate_density_accepts_and_converts_hint():
    out = validate_density([0.0, 0.3, 1.9, 2.3])
    assert out.dtype == float and out.tolist() == [0.0, 0.3, 1.9, 2.3]
    with pytest.raises(DensityError, match="divide by 1000"):
        validate_density(np.array([120.0, 300.0]))


def test_validate_density_collective(comm):
    # only the last rank holds a bad value; every rank must raise
    vals = np.array([0.3, 0.4])
    if comm.rank == comm.size - 1:
        vals[1] = -0.2
    with pytest.raises(DensityError, match="negative"):
        validate_density(vals, comm=comm)


# ------------------------------------------------------------------ assignment
def test_assign_density_per_compartment(check):
    bone = slab_bone(layers=True)
    assign_density(bone, cortical_g_cm3=1.6, trabecular_g_cm3=0.25)
    rho = bone.density.x.array
    check(np.all(rho[bone.compartment_mask("cortical")] == 1.6), "cortical")
    check(np.all(rho[bone.compartment_mask("trabecular")] == 0.25), "trabecular")
    check(np.all(rho[bone.compartment_mask("layer_superior")] == 1.0), "layer nominal")
    assert bone.parameters["density"]["compartments"]["cortical"] == 1.6
    # mapping overrides
    assign_density(bone, 1.6, 0.25, values={"layer_superior": 1.18})
    check(np.all(bone.density.x.array[bone.compartment_mask("layer_superior")] == 1.18), "override")
    with pytest.raises(InputError, match="compartments"):
        assign_density(bone, 1.6, 0.25, values={"marrow": 0.1})
    with pytest.raises(DensityError, match="cortical_g_cm3"):
        assign_density(bone, cortical_g_cm3=1600.0, trabecular_g_cm3=0.25)


def test_assign_density_array_and_function(check):
    bone = slab_bone()
    x = bone.cell_midpoints()
    assign_density(bone, values=lambda p: 0.1 + 0.01 * p[2])
    check(np.allclose(bone.density.x.array, 0.1 + 0.01 * x[:, 2]), "function of position")
    arr = np.full(bone.num_local_cells, 0.42)
    assign_density(bone, values=arr)
    check(np.all(bone.density.x.array == 0.42), "array")
    with pytest.raises(DensityError, match="per-cell"):
        assign_density(bone, values=np.ones(3))
    with pytest.raises(DensityError, match="Hounsfield"):
        assign_density(bone, values=np.full(bone.num_local_cells, -500.0))


def test_unknown_compartment_needs_value():
    bone = slab_bone()
    bone.cell_ids = {"cortical": 1, "marrow": 2}
    with pytest.raises(InputError, match="marrow"):
        assign_density(bone, 1.5, 0.3)
    assign_density(bone, 1.5, 0.3, values={"marrow": 0.05})


# ------------------------------------------------------------------ age model
def test_density_for_age_female_and_male():
    young = density_for_age(25, "female")
    assert young.fraction_of_peak == 1.0
    assert young.cortical_g_cm3 == density.PEAK_APPARENT_G_CM3["femur"]["cortical"]
    # 70-year-old woman: 16 y at 0.3 %/yr, 10 y losing 10.7 % (SWAN), 14 y at 0.4 %/yr
    f70 = 0.997**16 * (1 - 0.107) * 0.996**14
    old = density_for_age(70, "female")
    assert old.fraction_of_peak == pytest.approx(f70, rel=1e-12)
    assert old.trabecular_g_cm3 == pytest.approx(0.35 * f70, rel=1e-12)
    # exactly the SWAN transition between 46 and 56 y
    r = density.bone_fraction_of_peak(56) / density.bone_fraction_of_peak(46)
    assert r == pytest.approx(1 - 0.107, rel=1e-12)
    assert density_for_age(70, "male").fraction_of_peak == pytest.approx(0.996**40, rel=1e-12)
    fr = [density.bone_fraction_of_peak(a) for a in range(20, 100, 5)]
    assert all(b <= a for a, b in zip(fr, fr[1:]))
    with pytest.raises(InputError, match="sex"):
        density_for_age(70, "x")
    with pytest.raises(InputError, match="age"):
        density_for_age(-3)


# ------------------------------------------------------------------ T-score targeting
def test_bone_with_t_score_on_slab(check):
    bone = slab_bone(thickness_mm=20.0, layers=True)
    assign_density(bone, cortical_g_cm3=1.5, trabecular_g_cm3=0.3)
    new = bone_with_t_score(bone, -2.5)  # vertebra -> spine reference
    rec = new.parameters["t_score"]
    assert rec["site"] == "spine" and abs(rec["achieved"] + 2.5) < 1e-3
    # analytic: aBMD = 0.6 * mean(rho) * 2 cm over the bone part (layers are not bone), with
    # the latent rule (s < 1): cortex (1.5 >= 1.0 g/cm3, porosity 0.25) rho = 2 (1 - 0.25 / s),
    # cancellous 0.3 s -> 0.6 (2 - 0.5 / s + 0.3 s) = target, a quadratic in s
    target = 1.047 - 2.5 * 0.110
    b = 2.0 - target / 0.6
    s = (-b + np.sqrt(b * b + 4 * 0.3 * 0.5)) / (2 * 0.3)
    assert 0 < s < 1
    # converged to 1e-4 T-score SD in aBMD (bone_with_t_score tol): s to ~1e-5
    assert rec["density_scale"] == pytest.approx(s, rel=1e-4)
    s = rec["density_scale"]
    rho = new.density.x.array
    check(np.allclose(rho[new.compartment_mask("cortical")], 2.0 * (1 - 0.25 / s), rtol=1e-12),
          "cortical porosity x 1/s")
    check(np.allclose(rho[new.compartment_mask("trabecular")], 0.3 * s, rtol=1e-12), "cancellous x s")
    check(np.all(rho[new.compartment_mask("layer_superior")] == 1.0), "layers untouched")
    # the input bone is unchanged
    check(np.all(bone.density.x.array[bone.compartment_mask("cortical")] == 1.5), "input kept")
    assert t_score(dxa.areal_bmd(new, "spine"), "spine") == pytest.approx(-2.5, abs=1e-3)
    bv = rec["bv_tv"]
    assert bv["trabecular"][1] == pytest.approx(0.3 * s / 1.95, rel=1e-6)
    assert "layer_superior" not in bv


def test_latent_rule_reaches_low_t_scores(check):
    """Cortical porosity x 1/s: at T = -6 both compartments lose, neither is emptied."""
    bone = slab_bone(thickness_mm=10.0)
    assign_density(bone, cortical_g_cm3=1.8, trabecular_g_cm3=0.3)
    new = bone_with_t_score(bone, -6.0)
    rec = new.parameters["t_score"]
    # aBMD = 0.3 (c + t) = 1.047 - 0.66 = 0.387, c = 2 (1 - 0.1 / s), t = 0.3 s
    # -> 0.3 s^2 + (2 - 1.29) s - 0.2 = 0
    b = 2.0 - 0.387 / 0.3
    s = (-b + np.sqrt(b * b + 4 * 0.3 * 0.2)) / (2 * 0.3)
    assert rec["density_scale"] == pytest.approx(s, rel=1e-4)
    s = rec["density_scale"]
    rho = new.density.x.array
    check(np.allclose(rho[new.compartment_mask("trabecular")], 0.3 * s, rtol=1e-12), "cancellous")
    check(np.allclose(rho[new.compartment_mask("cortical")], 2 * (1 - 0.1 / s), rtol=1e-12), "cortex")
    assert rho[new.compartment_mask("trabecular")].min() > 0.05  # not emptied


def test_bone_with_t_score_respects_bounds(check):
    bone = slab_bone(thickness_mm=10.0)
    assign_density(bone, cortical_g_cm3=1.8, trabecular_g_cm3=0.6)
    new = bone_with_t_score(bone, 1.0)
    # aBMD = 0.3 * (c + t) g/cm2 with c capped at 2.0 -> t = target / 0.3 - 2.0
    target = 1.047 + 0.110
    rho = new.density.x.array
    check(np.allclose(rho[new.compartment_mask("cortical")], 2.0), "cortical capped")
    check(np.allclose(rho[new.compartment_mask("trabecular")], target / 0.3 - 2.0, rtol=1e-3),
          "trabecular compensates")
    with pytest.raises(DensityError, match="too thin"):
        bone_with_t_score(bone, 3.0)
    with pytest.raises(InputError, match="t_score"):
        bone_with_t_score(bone, float("nan"))


def test_femur_with_t_score_minus_2_5():
    from femur.geometry.femur_model import ProximalFemur

    bone = ProximalFemur().build()
    new = bone_with_t_score(bone, -2.5)
    assert bone.density is None  # input untouched
    rec = new.parameters["t_score"]
    assert rec["site"] == "femoral_neck"
    # independent re-measurement of the returned bone
    t = t_score(dxa.areal_bmd(new, "femoral_neck"), "femoral_neck")
    assert abs(t - (-2.5)) < 0.05 and abs(rec["achieved"] - t) < 1e-9
    assert dxa.areal_bmd(new, "femoral_neck") == pytest.approx(0.858 - 2.5 * 0.120, abs=0.006)
    rho = new.density.x.array
    c = rho[new.compartment_mask("cortical")]
    tr = rho[new.compartment_mask("trabecular")]
    assert np.unique(c).size == 1 and np.unique(tr).size == 1  # uniform per compartment
    # latent rule from the young-adult densities (cortex 1.85, cancellous 0.35 g/cm3)
    s = rec["density_scale"]
    assert tr[0] == pytest.approx(0.35 * s, rel=1e-12)
    assert c[0] == pytest.approx(2.0 * (1 - 0.075 / s), rel=1e-12)  # porosity 0.075 x 1/s
    # realistic compositions at T = -2.5 (BV/TV = rho / 1.95): dense cortex, sparse cancellous
    # (measured: s = 0.68, cortex 0.92, cancellous 0.12)
    assert 0.5 < s < 0.9
    assert 0.85 <= c[0] / 1.95 <= 0.95
    assert 0.08 <= tr[0] / 1.95 <= 0.16
    assert rec["bv_tv"]["cortical"][1] == pytest.approx(c[0] / 1.95)


def test_vertebra_with_spine_t_score_and_pmma_layers(check):
    from femur.geometry.vertebra import Vertebra
    from femur.mechanics.materials import default_material

    bone = Vertebra(layers="pmma", mesh_size_mm=3.0).build()
    new = bone_with_t_score(bone, -2.5)
    rec = new.parameters["t_score"]
    assert rec["site"] == "spine" and "1.047" in rec["reference"]
    assert t_score(dxa.areal_bmd(new, "spine"), "spine") == pytest.approx(-2.5, abs=1e-3)
    layer = new.compartment_mask("layer_superior")
    check(np.all(new.density.x.array[layer] == 1.18), "PMMA nominal density, not scaled")
    # the body-only projection gets the posterior-element allowance (Lee 2009: 52.8 % of BMC)
    m = dxa.measure(new, "spine")
    assert m["posterior_bmc_fraction"] == pytest.approx(0.528)
    # compositions: partial-volume shell and sparse vertebral cancellous bone at T = -2.5
    # (measured: shell 0.41, cancellous 0.078)
    bv = rec["bv_tv"]
    check(0.35 <= bv["cortical"][1] <= 0.8, f"shell BV/TV {bv['cortical']}")
    check(0.05 <= bv["trabecular"][1] <= 0.14, f"cancellous BV/TV {bv['trabecular']}")
    E = default_material(new).modulus_array(new)
    check(np.all(E[layer] == 2500.0), "PMMA modulus")
