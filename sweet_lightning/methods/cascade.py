"""Multi-Model cascade: independent truncated models trained in one run with the same
hyperparameters and seed; at inference they run small to large, so a sample stopping at
model i has paid for L_1 + ... + L_i layers."""

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.multi_exit import CascadeModel


class CascadeModule(AdaptiveModule):
    method = "cascade"
    kind = "cascade"

    def build_network(self, encoder, exit_layers, pooling, dropout, **kwargs):
        return CascadeModel(encoder, exit_layers, self.task.num_labels, pooling, dropout, **kwargs)
