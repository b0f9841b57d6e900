"""One module per operation (load tree, broker, lock, convert, result cache, bundles): the steps in order."""
