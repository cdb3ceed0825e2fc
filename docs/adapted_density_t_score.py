"""What the adapted density pattern does to a bone scaled to a femoral-neck T-score.

For the parametric and the anatomical femur at the trial mesh size (4 mm), compares the
uniform young-adult compartments with the habitual-loading pattern
(``femur.geometry.adapted_density.bone_with_adapted_density``), both scaled by
``femur.workflows.t_score.bone_with_t_score`` to FN T = -2.5: the latent scale s, the BV/TV
(min, mean, max) per compartment, and the resulting total-hip T-score.

    .venv/bin/python docs/adapted_density_t_score.py
"""

from femur.outcomes import dxa
from femur.geometry.adapted_density import bone_with_adapted_density
from femur.workflows.t_score import bone_with_t_score
from femur.geometry.anatomical import AnatomicalFemur
from femur.geometry.femur_model import ProximalFemur


def main() -> None:
    for label, bone in (("parametric", ProximalFemur(mesh_size_mm=4.0).build()),
                        ("anatomical", AnatomicalFemur(mesh_size_mm=4.0).build())):
        for density, b in (("uniform", bone), ("adapted", bone_with_adapted_density(bone))):
            scaled = bone_with_t_score(b, -2.5)
            t = scaled.parameters["t_score"]
            th = dxa.t_score(dxa.areal_bmd(scaled, "total_hip"), "total_hip")
            bv = {k: "/".join(f"{x:.3f}" for x in v) for k, v in t["bv_tv"].items()}
            print(f"{label:11s} {density:8s} s={t['density_scale']:.3f} BV/TV (min/mean/max) {bv} "
                  f"total-hip T={th:.2f}")


if __name__ == "__main__":
    main()
