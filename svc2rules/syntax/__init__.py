"""One package per target, knowing nothing of Services: typed objects, one writer, one reader."""
