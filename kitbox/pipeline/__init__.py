"""The run, stage by stage (:mod:`.stages`: prepare, train, blend, write, submit) and its one configuration
(:mod:`.config`, which the command line's flags come from): fold schemes
(:mod:`.splits`), the fold runner (:mod:`.cv`), blending (:mod:`.ensemble`), the summary, and folds as Ray
tasks (:mod:`.ray`)."""
