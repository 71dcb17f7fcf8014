"""Named weightings w(λ) of the continuous-time diffusion loss (Kingma & Gao 2023):

    L_w(x) = ½ E_{t~U(0,1)}[ w(λ_t) γ′(t) ‖ε − ε̂(z_t, t)‖² ],

w = 1 being the ELBO's diffusion term (VDM eq. 17) and any other w a reweighting of it. `model.loss` names
the objective: "vlb" (alias "elbo"; the whole bound, w = 1), "simple" (uniform in t, ‖ε − ε̂‖², i.e.
w(λ_t) = 1/γ′(t), which depends on the schedule rather than on λ alone), or a w(λ) below.
"""

from __future__ import annotations

import torch
from torch import Tensor

from elbolab.diffusion.edm import P_MEAN, P_STD, SIGMA_DATA, lognormal_density, loss_weight, ve_sigma
from elbolab.errors import ConfigError

#: elbolab's default b of the sigmoid weighting w(λ) = sigmoid(b − λ) (`model.sigmoid_bias`); Kingma & Gao
#: (2023, §5) treat b as a hyperparameter tuned per data set and resolution, so set it for yours
SIGMOID_BIAS = 2.0
#: EDM's (Karras et al. 2022) training distribution ln σ̃ ~ N(P_mean, P_std²) with P_mean = −1.2, P_std = 1.2,
#: i.e. λ = −2 ln σ̃ ~ N(2.4, 2.4²), and its σ_data = 0.5 (`edm`, one source for both)
EDM_LOG_SNR_MEAN, EDM_LOG_SNR_STD, EDM_SIGMA_DATA = -2 * P_MEAN, 2 * P_STD, SIGMA_DATA


def sigmoid_weight(log_snr: Tensor, bias: float = SIGMOID_BIAS) -> Tensor:
    """w(λ) = sigmoid(b − λ): ≈ 1 (the ELBO) at low SNR, fading at high SNR past λ = b (Kingma & Gao 2023, §5)."""
    return torch.sigmoid(bias - log_snr)


def edm_weight(log_snr: Tensor) -> Tensor:
    """EDM's objective as a weighting: w(λ) = N(λ; 2.4, 2.4²) (e^{−λ} + σ_data²)/σ_data² (Kingma & Gao 2023,
    Table 1): the density of EDM's draw of λ times its loss weight on ‖ε − ε̂‖² (`edm`)."""
    return lognormal_density(log_snr) * loss_weight(ve_sigma(log_snr), SIGMA_DATA)


#: the weightings given by a function of λ (beside "vlb", w = 1, and "simple", w = 1/γ′)
WEIGHTINGS = {"sigmoid": sigmoid_weight, "edm": edm_weight}
#: how each objective is named in reports ("sigmoid" with its b, see `describe`)
DESCRIPTIONS = {
    "vlb": "continuous-time ELBO (weighting γ′(t), bits/dim)",
    "simple": "L_simple (ε-MSE, uniform in t)",
    "sigmoid": "weighted ELBO 'sigmoid', w(λ) = sigmoid({bias:g} − λ) (Kingma & Gao 2023)",
    "edm": "weighted ELBO 'edm', EDM's w(λ) = N(λ; 2.4, 2.4²)(e^−λ + 0.25)/0.25 (Kingma & Gao 2023)",
}


def describe(name: str, sigmoid_bias: float = SIGMOID_BIAS) -> str:
    """The objective's name in reports."""
    return DESCRIPTIONS[name].format(bias=sigmoid_bias)


def weight(name: str, log_snr: Tensor, sigmoid_bias: float = SIGMOID_BIAS) -> Tensor:
    """w(λ) of the named weighting (the sigmoid's midpoint at λ = `sigmoid_bias`); a clear error for a name that
    has none."""
    if name == "vlb":
        return torch.ones_like(log_snr)
    if name not in WEIGHTINGS:
        raise ConfigError(f"unknown loss weighting {name!r}; choose one of vlb, {', '.join(WEIGHTINGS)}")
    if name == "sigmoid":
        return sigmoid_weight(log_snr, sigmoid_bias)
    return WEIGHTINGS[name](log_snr)
