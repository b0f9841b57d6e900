"""Code that runs inside the confined child: the bootstrap that confines it, then the torch.hub runtime."""
