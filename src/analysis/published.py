"""Published numbers the reproductions are compared with, each with its source (see the project notes on
papers and baselines for where each was read).

``CLAIMS`` holds every claim of the two seed articles and the papers' headline results as the source states
it; src/analysis/claims.py holds how each is tested (experiment, criterion). Seed 1 is "Exploding Gradient
Problem" (M. Vasim, 2026), seed 2 "Exploding Gradient Explained: How To Detect & Overcome It [6 Best
Practices]" (2023); both are in the project's seeds folder.
"""

from __future__ import annotations

from dataclasses import dataclass

SEED1 = "seed 1 (Vasim, Exploding Gradient Problem)"
SEED2 = "seed 2 (Exploding Gradient Explained, 6 best practices)"
PASCANU = "Pascanu, Mikolov & Bengio 2013 (ICML)"
ARJOVSKY = "Arjovsky, Shah & Bengio 2016 (ICML)"
LE = "Le, Jaitly & Hinton 2015 (arXiv:1504.00941)"
BAI = "Bai, Kolter & Koltun 2018 (arXiv:1803.01271)"
XIONG = "Xiong et al. 2020 (ICML, On Layer Normalization in the Transformer Architecture)"
WORTSMAN = "Wortsman et al. 2023 (arXiv:2309.14322, Small-scale proxies for large-scale Transformer instabilities)"
MICIKEVICIUS = "Micikevicius et al. 2018 (ICLR, Mixed Precision Training)"

# Seed article "Exploding Gradient Problem": the worked example's table and the code listing's printout.
SEED_DELTA_TEXT = {2.0: [16.0, 8.0, 4.0, 2.0, 1.0]}  # δ_1 .. δ_5, w = 2, n = 5 (its prose and figure)
SEED_LISTING_PRINTED = {  # "gradients at each layer" as the listing's output block prints them
    0.5: [0.0312, 0.0625, 0.125, 0.25, 0.5],
    1.0: [1.0, 1.0, 1.0, 1.0, 1.0],
    2.0: [16.0, 8.0, 4.0, 2.0, 1.0],
}
SEED_DEPTH20_DELTA1 = 2.0**19  # "gradient at layer 1 = 2^19 = 524,288"
SEED_DEPTH20_UPDATE = 52_428.0  # "Weight update = 52,428" (0.1 · 2^19 = 52,428.8)
SEED_STEP_CHANGE = 1.6  # "0.1 × 16 = 1.6 — changing the weight by 80%"
SEED_Q1 = {3.0: 81.0, 0.9: 0.6561}  # question 1: δ_1 at n = 5 (w^4)
SEED_Q3 = {1.01: 2.705, 0.99: 0.366}  # question 3: w^100 as the audit of the seed states it
SEED_CLIP_TEXT = [3.72, 2.79, -1.86]  # [16, 12, −8] clipped to norm 5, the seed's prose
SEED_CLIP_LISTING = [3.714, 2.786, -1.857]  # the same, the listing's printed output
SEED_INIT_CLAIM = (
    "any network deeper than ~10 layers with weights sampled from N(0, 1) (not He or Xavier) will encounter this"
)
SEED_CLIP_CLAIM = "Common max_norm values: 1.0 (tight), 5.0 (moderate), 10.0 (loose). For RNNs: 1.0 is standard."

# Recurrent long dependencies (adding: U(0,1) values, one marker per half, baseline 1/6).
RECURRENT_ADDING = {
    "rnn": "Arjovsky et al. 2016 Fig. 2: tanh RNN does not beat the baseline at any T "
    "(100-750; 128 units, RMSProp 1e-3)",
    "rnn_relu": "no published adding number for an orthogonally initialised relu RNN",
    "irnn": "Le et al. 2015 (quoted by Arjovsky et al. 2016): IRNN solves T = 300 only after > 1M iterations; "
    "Arjovsky et al.: IRNN never beats the baseline",
    "lstm": "Arjovsky et al. 2016 Fig. 2: LSTM beats the baseline up to T = 400; "
    "Bai et al. 2018 Table 1: T = 600 LSTM 0.164 (≈ baseline)",
    "gru": "Bai et al. 2018 Table 1: T = 600 GRU 5.3e-5",
}
RECURRENT_COPY = {
    "rnn": "Arjovsky et al. 2016 Fig. 1: tanh RNN sits at the memoryless baseline (T = 100-500); "
    "Bai et al. 2018: T = 1000 RNN 0.0202 vs baseline 0.0204",
    "rnn_relu": "no published copy number",
    "irnn": "Arjovsky et al. 2016 Fig. 1: IRNN at the baseline",
    "lstm": "Arjovsky et al. 2016 Fig. 1: LSTM beats the baseline only at T = 100; Bai et al. 2018: T = 1000 0.0204",
    "gru": "Bai et al. 2018 Table 1: T = 1000 GRU 0.0197 (at the baseline)",
}
PASCANU_CLIP = (
    "Pascanu et al. 2013 §3.2: thresholds from half to ten times the average gradient norm still converge, "
    "at different speeds; clipping matters more as sequences get longer (Fig. 7, temporal order)"
)


@dataclass(frozen=True)
class Published:
    """A claim as its source states it.

    Args:
        source: the article or paper (and section).
        claim: what it says, quoted where the words matter.
        number: the published number, or "–" where the claim has none.
    """

    source: str
    claim: str
    number: str = "–"


CLAIMS: dict[str, Published] = {
    # --- seed 1: the worked example and its questions ---------------------------------------------------------
    "chain.delta": Published(
        SEED1,
        "5 layers, every weight 2.0, x = 1: the backward signal is δ = 16, 8, 4, 2, 1; ∂L/∂W₁ = 16",
        "δ₁ … δ₅ = 16, 8, 4, 2, 1",
    ),
    "chain.update": Published(SEED1, "lr 0.1: W₁'s update is 0.1 × 16 = 1.6, 80% of its value", "1.6 (80%)"),
    "chain.depth20": Published(
        SEED1,
        "20 layers: the gradient at layer 1 is 2¹⁹ and the update 52,428; the network diverges",
        "δ₁ = 524,288; ΔW₁ = 52,428",
    ),
    "chain.listing": Published(
        SEED1,
        "the code listing prints gradients w=0.5: [0.0312 … 0.5], w=2.0: [16.0 … 1.0]",
        "0.5: 0.0312, 0.0625, 0.125, 0.25, 0.5; 2.0: 16, 8, 4, 2, 1",
    ),
    "chain.crossover": Published(
        SEED1, "the crossover point is exactly |w| = 1 (gradient constant across layers)", "1"
    ),
    "q1": Published(
        SEED1, "question 1: the gradient at layer 1 with w = 3.0 and with w = 0.9, 5 layers", "3⁴ = 81; 0.9⁴ = 0.6561"
    ),
    "q3": Published(
        SEED1,
        "question 3: a length-100 sequence, scalar W = 1.01 or 0.99: gradient ∝ W¹⁰⁰ — even 'safe' weights "
        "explode or vanish over long ranges",
        "1.01¹⁰⁰ = 2.705; 0.99¹⁰⁰ = 0.366",
    ),
    "clip.example": Published(
        SEED1,
        "g = [16, 12, −8] clipped to 5: ‖g‖ = 21.54, g_clipped = [3.72, 2.79, −1.86] (listing prints "
        "[3.714 2.786 −1.857]); the direction is preserved exactly",
        "[3.72, 2.79, −1.86]; [3.714, 2.786, −1.857]",
    ),
    "q2": Published(
        SEED1,
        "question 2: g = [3, 4] clipped to 2: ‖g‖, the scale, g_clipped; [3, 4] and [6, 8] clipped to 2 point "
        "the same way",
        "5; 0.4; [1.2, 1.6]; same direction",
    ),
    "q4": Published(
        SEED1,
        "question 4: ∂L/∂W₁ = [100, 0], ∂L/∂W₂ = [0, 0.1], global clip to 1: W₂'s gradient all but vanishes "
        "(is that desirable?)",
        "W₂ ×1/100 → [0, 0.001]",
    ),
    "q5": Published(
        SEED1,
        "question 5: loss falls for 3 epochs then NaN: which diagnostics confirm exploding gradients",
        "–",
    ),
    # --- seed 1: causes, symptoms, remedies -----------------------------------------------------------------
    "init.normal": Published(SEED1, f'"{SEED_INIT_CLAIM}"', "depth > ~10"),
    "init.he_xavier": Published(
        SEED1 + "; " + SEED2,
        "He or Xavier initialisation keeps the initial gradient magnitudes in a stable range "
        "(the compound multiplication through layers stays near 1)",
    ),
    "rnn.clipping": Published(
        SEED1,
        "RNNs: a length-100 sequence is a 100-layer network; RNNs for long sequences cannot be trained "
        "without gradient clipping",
    ),
    "symptom.nan": Published(
        SEED1,
        "symptom 1: the training loss suddenly goes to NaN after a few epochs — the model was learning, "
        "then the weights overflowed",
    ),
    "symptom.weights": Published(SEED1, "symptom 2: |W| increases monotonically in the first 2–3 epochs"),
    "symptom.norm": Published(
        SEED1,
        "symptom 3: the gradient norm grows consistently across epochs, from ~1 to ~1000 over 10 epochs",
        "~1 → ~1000 over 10 epochs",
    ),
    "clip.standard": Published(SEED1, f'"{SEED_CLIP_CLAIM}"', "1.0 for RNNs"),
    "clip.tradeoff": Published(
        SEED1,
        "a threshold too small clips frequently and the optimizer takes tiny steps; too large fails to "
        "prevent occasional spikes",
    ),
    "clip.vanishing": Published(
        SEED1,
        "clipping prevents NaN but does not solve the root cause: over long sequences the gradient still "
        "loses the signal from distant timesteps",
        "500+ timesteps",
    ),
    "bn.small_batch": Published(
        SEED1,
        "on small batches (< 8) batch-norm estimates are noisy; layer normalization is preferred "
        "(for RNNs and transformers)",
        "batch < 8",
    ),
    "bn.prevents": Published(
        SEED1 + "; " + SEED2,
        "batch normalization prevents exploding gradients: if activations cannot grow "
        "exponentially, gradients cannot either",
    ),
    "monitoring": Published(
        SEED1 + "; " + SEED2,
        "detect it by gradient norms per layer, histograms, loss and weight-update trends, "
        "NaN/Inf checks, comparative studies",
    ),
    # --- seed 2: causes and mitigations ----------------------------------------------------------------------
    "depth": Published(SEED2, "gradient amplification becomes more pronounced with depth; reduce the network's depth"),
    "lr": Published(
        SEED2,
        "the learning rate acts as a multiplier to the gradient: high values cause huge parameter updates "
        "that destabilise training",
    ),
    "activations.explode": Published(
        SEED2, "ReLU (unbounded), Leaky ReLU, ELU and Swish can contribute to exploding gradients in deep networks"
    ),
    "activations.mitigate": Published(
        SEED2, "Leaky ReLU or ELU mitigate: they reduce the chances of extreme gradient values"
    ),
    "optimizers": Published(
        SEED2,
        "adaptive learning-rate algorithms (Adam, RMSprop, AdaGrad) minimise the impact of substantial gradients",
    ),
    "weight_decay": Published(SEED2, "weight decay discourages extensive weight updates (a mitigation)"),
    "residual": Published(SEED2, "skip connections (residual networks) alleviate gradient explosion"),
    "residual.norm": Published(
        SEED2 + "; He et al. 2016",
        "residual networks as built in practice: every skip connection beside a "
        "normalisation layer (He et al. 2016 use BatchNorm)",
    ),
    "batch_size": Published(SEED2, "experiment with mini-batch sizes to observe their impact on gradient stability"),
    "early_stopping": Published(SEED2, "early stopping prevents further divergence caused by exploding gradients"),
    "bn.higher_lr": Published(SEED2, "batch normalization allows higher learning rates without destabilising training"),
    "clip.rules": Published(
        SEED2, "layer-wise clipping and gradient penalties regulate gradient magnitudes (beside norm clipping)"
    ),
    # --- papers ---------------------------------------------------------------------------------------------
    "pascanu.bound": Published(
        PASCANU + " §2.1",
        "gradients can explode only if the largest singular value of W_rec exceeds 1/γ "
        "(γ = 1 for tanh); below it they vanish at least geometrically",
        "σ_max(W_hh) > 1",
    ),
    "pascanu.length": Published(
        PASCANU + " §4.1.1, Fig. 7",
        '"As the length of the sequence increases, using clipping becomes more '
        'important to achieve a better success rate" (temporal order, 50 tanh units, SGD lr 0.01, 5 seeds)',
        "success-rate gap grows with T",
    ),
    "pascanu.threshold": Published(
        PASCANU + " §3.2",
        '"values from half to ten times this average [norm] can still yield convergence, '
        'though convergence speed can be affected"',
        "0.5–10× the mean norm",
    ),
    "pascanu.temporal_order": Published(
        PASCANU + " §4.1.1",
        "SGD with clipping (and their regulariser) solves temporal order up to T = 200 on 5/5 "
        "seeds (< 1% of 10,000 sequences wrong), within 5M updates",
        "100% success, T ≤ 200",
    ),
    "arjovsky.rnn": Published(
        ARJOVSKY + " Fig. 2",
        '"The RNN with tanh is not able to beat the baseline for any time length" (adding, '
        "T = 100–750, 128 units, RMSProp 1e-3, clip 1)",
        "no T beats 0.167",
    ),
    "arjovsky.lstm": Published(
        ARJOVSKY + " Fig. 2",
        'the LSTM is "able to convincingly beat the baseline up to T=400" (adding)',
        "beats 0.167 up to T = 400",
    ),
    "arjovsky.copy": Published(
        ARJOVSKY + " Fig. 1",
        'on copy memory "the LSTM is able to beat the baseline only for 100 time steps"; '
        "at T ≥ 200 it scores the memoryless 10·ln8/(T+20)",
        "beats only at T = 100",
    ),
    "le.irnn": Published(
        LE + ", as quoted by " + ARJOVSKY,
        "the IRNN solves the adding problem at T = 300 (the tanh RNN at T = "
        "150) but needs over a million iterations before it starts learning",
        "> 1M iterations",
    ),
    "bai.gru": Published(
        BAI + " Table 1",
        "adding T = 600, ~70K parameters: GRU 5.3e-5, LSTM 0.164, vanilla RNN 0.177 (final MSE)",
        "GRU 5.3e-5 vs LSTM 0.164",
    ),
    "bai.copy": Published(
        BAI + " Table 1",
        "copy T = 1000: LSTM 0.0204, GRU 0.0197, RNN 0.0202 — the memoryless 0.02039",
        "at the baseline",
    ),
    # --- the Transformer family (issue 14) ---------------------------------------------------------------------
    "xiong.init": Published(
        XIONG + " Fig. 3",
        "at initialisation the gradient norm of each layer's W^(2,l) grows with the layer index for Post-LN and "
        "stays flat for Pre-LN",
        "Post-LN rising, Pre-LN flat",
    ),
    "xiong.init_relative": Published(
        XIONG + " abstract",
        '"the expected gradients of the parameters near the output layer are large" for Post-LN; Pre-LN\'s are '
        '"well-behaved"',
    ),
    "xiong.warmup": Published(
        XIONG + " §3",
        "Post-LN Transformers need a learning-rate warm-up stage to train; Pre-LN ones train without it",
        "warm-up needed (Post-LN only)",
    ),
    "wortsman.qk_norm": Published(
        WORTSMAN + " §3.1.1",
        "qk-layernorm lowers the LR sensitivity (the mean excess loss over a decade-spaced lr sweep) and widens "
        "the range of learning rates that train",
        "lower LR sensitivity with qk-layernorm",
    ),
    "wortsman.logits": Published(
        WORTSMAN + " §3.1.1; Dehghani et al. 2023",
        "without qk-layernorm the attention logits grow large at high learning rates (attention-logit growth) "
        "and the run fails",
    ),
    "fp16.overflow": Published(
        MICIKEVICIUS + "; torch.amp.GradScaler",
        "fp16 needs loss scaling (its largest value is 65504): the scaler skips steps whose gradients overflow "
        "and lowers its scale; bf16 has fp32's exponent range and needs none",
        "fp16 max 65504",
    ),
}
