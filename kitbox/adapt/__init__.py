"""What a competition is to kitbox: the adapter contract (:mod:`.contract`), typed recipe options
(:mod:`.options`), the ready-made bases (:mod:`.bases`, one file per shape of data), finding an adapter by slug,
file or entry point (:mod:`.registry`), and writing one for a new data folder (:mod:`.scaffold`)."""
