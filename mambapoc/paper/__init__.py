"""Function-class in-context learning, Mamba vs Transformer: a small-scale reproduction of Grazzi et al.
(2024), "Is Mamba Capable of In-Context Learning?", itself built on the setup of Garg et al. (2022).

A prompt is (x_1, f(x_1), ..., x_n, f(x_n)) for a function f drawn afresh from a class (linear, sparse
linear, 2-layer ReLU network, decision tree); a model reads it through a linear read-in and predicts
f(x_i) from the earlier pairs with a scalar read-out at each x position. See docs/paper.md.
"""
