"""Published numbers the reproductions are compared with, each with its source (see the project notes on
papers and baselines for where each was read)."""

from __future__ import annotations

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
