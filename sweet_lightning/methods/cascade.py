"""Multi-Model cascade: independent truncated models trained in one run with the same
hyperparameters and seed; at inference they run small to large, so a sample stopping at
model i has paid for L_1 + ... + L_i layers."""

import torch
from lightning.pytorch.utilities import GradClipAlgorithmType

from sweet_lightning.methods.base import AdaptiveModule
from sweet_lightning.multi_exit import CascadeModel


class CascadeModule(AdaptiveModule):
    method = "cascade"
    cost_model = "cascade"

    def build_network(self, encoder, exit_layers, pooling, dropout, shared_pooler: bool = False, **kwargs):
        if shared_pooler:
            raise ValueError(
                "method.shared_pooler=true does not apply to method=cascade: its members are independent "
                "models and share nothing; drop the key."
            )
        return CascadeModel(encoder, exit_layers, self.task.num_labels, pooling, dropout, **kwargs)

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        """Clip each member's gradient norm on its own.

        Lightning clips the norm over all parameters together, so one member's large gradient
        would shrink every other member's step and the jointly trained members would no longer
        be the independent models the paper's Multi-Model baseline is. Clipping by value acts
        element by element and couples nothing: Lightning's own clipping does it. Under
        16-bit AMP Lightning has unscaled the gradients before this hook, as for its own.
        """
        algorithm = gradient_clip_algorithm or GradClipAlgorithmType.NORM  # None: Lightning's default
        if not gradient_clip_val or GradClipAlgorithmType(algorithm) != GradClipAlgorithmType.NORM:
            return super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
        for member in self.net.members:
            grads = [p for p in member.parameters() if p.grad is not None]
            if grads:
                torch.nn.utils.clip_grad_norm_(grads, float(gradient_clip_val))
        return None
