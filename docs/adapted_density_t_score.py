"""Why the habitual-loading pattern lowered the total-hip T-score, and what the fix does.

For the built-in femurs (anatomical 3 mm default and 4 mm trial mesh, parametric 3 mm)
and three density fields --

* ``uniform``: young-adult compartments (cortex 1.85, cancellous 0.35 g/cm3);
* ``both``: the adapted field as a pattern inside *both* compartments (cortex clipped to
  [1.6, 2.0] g/cm3; what branch ``adapt`` did, "before");
* ``cancellous``: the pattern inside the cancellous compartment only, cortex uniform (the
  default since the fix, "after"; ``femur.geometry.adapted_density``) --

it prints the share of the cortical volume at the pore-free bound 2.0 g/cm3, the
DXA-equivalent FN and TH T-scores of the young-adult field (s = 1), and, after
``bone_with_t_score`` to FN T = -2.5 (the default patient), the latent scale s and the
total-hip T-score. ``bone_with_t_score`` lowers cortical density by scaling its porosity,
so pore-free cells keep all their bone: the FN box can then only lose bone elsewhere.

    .venv/bin/python docs/adapted_density_t_score.py
"""

import numpy as np

from femur.core.mpi import MPI
from femur.geometry.adapted_density import bone_with_adapted_density
from femur.geometry.density import T_SCORE_BASE_G_CM3, assign_density
from femur.outcomes import dxa
from femur.workflows.bones import build_geometry
from femur.workflows.t_score import bone_with_t_score

FIELDS = {"uniform": None, "both": ("trabecular", "cortical"), "cancellous": ("trabecular",)}


def _field(bone, patterned):
    if patterned is None:
        base = T_SCORE_BASE_G_CM3["femur"]
        return assign_density(bone.copy(), cortical_g_cm3=base["cortical"], trabecular_g_cm3=base["trabecular"])
    return bone_with_adapted_density(bone, patterned=patterned)


def _pore_free_share(bone) -> float:
    n = bone.num_owned_cells
    vol = bone.cell_volumes()[:n]
    cort = bone.compartment_mask("cortical")[:n]
    rho = bone.density.x.array[:n]
    s = bone.comm.allreduce(np.array([np.sum(vol * cort * (rho >= 2.0 - 1e-9)), np.sum(vol * cort)]), op=MPI.SUM)
    return float(s[0] / s[1])


def main() -> None:
    print("femur (mesh)          field       pore-free cortex  young FN T  young TH T  s at FN -2.5  TH T at FN -2.5")
    for name, size in (("femur", 3.0), ("femur", 4.0), ("parametric-femur", 3.0)):
        bone = build_geometry(name, mesh_size_mm=size)
        for label, patterned in FIELDS.items():
            young = _field(bone, patterned)
            rep0 = dxa.report(young)
            scaled = bone_with_t_score(young, -2.5)
            rep = dxa.report(scaled)
            pore_free = _pore_free_share(young)
            if MPI.COMM_WORLD.rank == 0:
                print(f"{name:16s} {size:.0f} mm  {label:10s}  {pore_free:16.2f}  "
                      f"{rep0['femoral_neck']['t_score']:+10.2f}  {rep0['total_hip']['t_score']:+10.2f}  "
                      f"{scaled.parameters['t_score']['density_scale']:12.3f}  {rep['total_hip']['t_score']:+15.2f}")


if __name__ == "__main__":
    main()
