"""The information measures evaluation and comparison read: I(x; latent) for the empirical data distribution
(`elbolab.information`) and the forward process's curve along t (`elbolab.diffusion.information`)."""

from elbolab.diffusion.information import forward_information, forward_information_at
from elbolab.information import InformationCurve, code_information, information_estimate, posterior_entropy

__all__ = [
    "InformationCurve",
    "code_information",
    "forward_information",
    "forward_information_at",
    "information_estimate",
    "posterior_entropy",
]
