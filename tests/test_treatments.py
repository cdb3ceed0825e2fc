"""Regimens, sequences, parsing errors and drug PK (label targets and analytic checks)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from femur.core.errors import InputError
from femur.calibration.remodeling import romosozumab_pk_metrics
from femur.core.units import DAYS_PER_MONTH
from femur.remodeling.parameters import ModelParameters
from femur.treatments.pk_parameters import DenosumabPK, RomosozumabPK
from femur.treatments import Regimen, TreatmentSequence, compute_exposure, parse_treatment
from femur.treatments.pk import denosumab_concentration_ng_ml, romosozumab_concentration_ug_ml

pytestmark = pytest.mark.serial


# ---------------------------------------------------------------- regimens ------------
def test_default_regimens_match_labels():
    r = Regimen("romosozumab")
    assert (r.dose, r.dose_unit, r.route) == (210.0, "mg", "sc")
    assert r.interval_days == pytest.approx(DAYS_PER_MONTH)
    assert Regimen("denosumab").interval_days == pytest.approx(6 * DAYS_PER_MONTH)
    assert Regimen("alendronate").interval_days == 7.0 and Regimen("alendronate").route == "oral"
    tp = Regimen("teriparatide")
    assert (tp.dose, tp.dose_unit, tp.interval_days) == (20.0, "ug", 1.0)
    assert tp.dose_mg == pytest.approx(0.02)
    assert Regimen("placebo").dose_times().size == 0


def test_dose_times_count():
    # 12 monthly doses in 12 months, 2 denosumab doses in 12 months, 52/53 weekly
    assert Regimen.default("romosozumab", 12).dose_times().size == 12
    assert Regimen.default("denosumab", 12).dose_times().size == 2
    assert Regimen.default("alendronate", 12).dose_times().size == 53  # ceil(365.25/7)
    assert Regimen.default("teriparatide", 1).dose_times().size == 31  # ceil(30.44)


def test_parse_sequence_and_discontinue():
    seq = parse_treatment("romosozumab:12,denosumab:12")
    assert isinstance(seq, TreatmentSequence)
    assert [c.drug for c in seq] == ["romosozumab", "denosumab"]
    assert seq.courses[1].start_day == pytest.approx(12 * DAYS_PER_MONTH)
    assert seq.end_day == pytest.approx(24 * DAYS_PER_MONTH)
    t, d = seq.doses("romosozumab")
    assert t.size == 12 and np.all(d == 210.0)
    assert seq.doses("denosumab")[0][0] == pytest.approx(12 * DAYS_PER_MONTH)
    cut = seq.discontinue(6 * DAYS_PER_MONTH)
    assert [c.drug for c in cut] == ["romosozumab"]
    assert cut.doses("romosozumab")[0].size == 6
    assert seq.drug_at(400) == "denosumab" and seq.drug_at(1e4) == "none"
    # bare name with months; last item fills the remainder
    assert parse_treatment("placebo", months=6).end_day == pytest.approx(6 * DAYS_PER_MONTH)
    s2 = parse_treatment("placebo:6,romosozumab", months=18)
    assert s2.courses[1].duration_days == pytest.approx(12 * DAYS_PER_MONTH)
    assert s2.label() == "placebo:6,romosozumab:12"
    # Regimen.sequence concatenates
    s3 = Regimen.sequence([Regimen.default("romosozumab", 12), Regimen.default("alendronate", 12)])
    assert s3.courses[1].start_day == pytest.approx(12 * DAYS_PER_MONTH)


@pytest.mark.parametrize(
    "spec, match",
    [
        ("aspirin", "unknown drug 'aspirin'.*romosozumab"),
        ("romosozumab:0", "must be > 0"),
        ("romosozumab:-3", "must be > 0"),
        ("romosozumab:abc", "must be a number"),
        ("romosozumab:12,,denosumab:12", "empty item"),
        ("romosozumab:12:3", "ill-formed"),
        ("romosozumab,denosumab:12", "needs a duration"),
        ("", "empty treatment spec"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(InputError, match=match):
        parse_treatment(spec)


def test_regimen_errors():
    with pytest.raises(InputError, match="dose must be >= 0"):
        Regimen("denosumab", dose=-60)
    with pytest.raises(InputError, match="interval_days must be > 0"):
        Regimen("denosumab", interval_days=0)
    with pytest.raises(InputError, match="months must be > 0"):
        parse_treatment("romosozumab", months=0)
    with pytest.raises(InputError, match="months must be > 0"):
        Regimen.default("romosozumab", -1)
    with pytest.raises(InputError, match="overlapping"):
        TreatmentSequence((Regimen("romosozumab", duration_days=100), Regimen("denosumab", start_day=50)))
    with pytest.raises(InputError, match="before it starts"):
        Regimen("denosumab", start_day=10).discontinue(5)
    with pytest.raises(InputError, match="route"):
        Regimen("denosumab", route="inhaled")


# ---------------------------------------------------------------- PK -------------------
def test_romosozumab_label_pk():
    """Calibration target #5 (US Evenity label 12.3)."""
    m = romosozumab_pk_metrics(ModelParameters().pk.romosozumab)
    assert 22.2 - 5.8 <= m["cmax_ug_ml"] <= 22.2 + 5.8
    assert 3.0 <= m["tmax_day"] <= 8.0
    assert all(8.0 <= tr <= 13.0 for tr in m["troughs_ug_ml"])
    assert 9.0 <= m["half_life_day"] <= 17.0


def test_romosozumab_is_nonlinear():
    """Label: PK is nonlinear -> dose-normalised AUC rises with dose (saturable MM)."""
    t = np.arange(0, 200, 0.25)
    a1 = np.trapezoid(romosozumab_concentration_ug_ml([0.0], [70.0], t), t) / 70
    a3 = np.trapezoid(romosozumab_concentration_ug_ml([0.0], [210.0], t), t) / 210
    assert a3 > 1.1 * a1


def test_linear_limits_match_bateman():
    """With MM off, both PK models reduce to the analytic one-compartment Bateman function."""
    t = np.arange(0, 60, 0.5)
    pk = replace(RomosozumabPK(), vmax_nm_per_day=0.0, q_l_per_day=0.0)
    c = romosozumab_concentration_ug_ml([0.0], [210.0], t, pk)
    ka, k = pk.ka_per_day, pk.cl_l_per_day / pk.vc_l
    dose_ug = 210e3 * pk.bioavailability
    exact = dose_ug / (pk.vc_l * 1e3) * ka / (ka - k) * (np.exp(-k * t) - np.exp(-ka * t))
    np.testing.assert_allclose(c, exact, rtol=1e-4, atol=1e-6)
    dp = replace(DenosumabPK(), vmax_ng_per_kg_day=0.0)
    c = denosumab_concentration_ng_ml([0.0], [60.0], t, 60.0, dp)
    V = dp.vc_ml_per_kg * 60.0
    exact = 60e6 / V * dp.ka_per_day / (dp.ka_per_day - dp.kel_per_day) * (
        np.exp(-dp.kel_per_day * t) - np.exp(-dp.ka_per_day * t))
    np.testing.assert_allclose(c, exact, rtol=1e-4, atol=1e-3)


def test_exposure_means_and_inputs():
    seq = parse_treatment("alendronate:3,teriparatide:2")
    ex = compute_exposure(seq, 6 * DAYS_PER_MONTH, 65.0)
    n_aln = seq.doses("alendronate")[0].size
    # all absorbed alendronate reaching bone: 70 mg * 0.6 % * 50 %
    assert ex.aln_bone_mg_cum[-1] == pytest.approx(n_aln * 70 * 0.006 * 0.5)
    # teriparatide: normalised exposure 1 per day on treatment, 0 before
    assert ex.mean(10.0, 20.0)["pth"] == pytest.approx(0.0)
    assert ex.mean(100.0, 130.0)["pth"] == pytest.approx(1.0)
    assert ex.mean(170.0, 180.0)["pth"] == pytest.approx(0.0)
    # denosumab: positive, peaks after days, decays, and no drug before dosing
    ex2 = compute_exposure(parse_treatment("placebo:1,denosumab:6"), 9 * DAYS_PER_MONTH, 65.0)
    assert np.all(ex2.dmab_ng_ml[ex2.t_days < DAYS_PER_MONTH] == 0.0)
    i = np.argmax(ex2.dmab_ng_ml)
    assert 3 < ex2.t_days[i] - DAYS_PER_MONTH < 30
    assert 1e3 < ex2.dmab_ng_ml[i] < 2e4
    assert np.all(ex2.dmab_ng_ml >= 0)


def test_a_bare_drug_runs_for_the_whole_simulation_unless_the_label_fixes_the_course():
    """`femur simulate --treatment denosumab --months 36` treats for 36 months (issue 9);
    romosozumab's label fixes 12 monthly doses."""
    d = parse_treatment("denosumab", months=36)
    assert d.end_day == pytest.approx(36 * DAYS_PER_MONTH) and d.doses("denosumab")[0].size == 6
    r = parse_treatment("romosozumab", months=36)
    assert r.end_day == pytest.approx(12 * DAYS_PER_MONTH) and r.doses("romosozumab")[0].size == 12
    # the rest of a sequence follows the same rule
    s = parse_treatment("romosozumab:12,alendronate", months=36)
    assert s.courses[1].duration_days == pytest.approx(24 * DAYS_PER_MONTH)
    # the echo of what is simulated
    assert "denosumab 60 mg sc every 182.6 d, months 0-36 (6 doses)" in d.summary()
    assert parse_treatment("romosozumab", months=3).describe(3 * DAYS_PER_MONTH)[0]["doses"] == 3
