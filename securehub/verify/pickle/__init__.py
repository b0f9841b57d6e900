"""Static checks of pickle checkpoints: ``scan`` (containers -- zip, tar, legacy -- and every pickle stream
in them) and ``ops`` (the opcode interpreter: a symbolic stack and memo, globals against torch's
``weights_only`` allowlist). Nothing here unpickles anything."""
