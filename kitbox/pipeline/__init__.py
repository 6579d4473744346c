"""The run, stage by stage (:mod:`.stages`: prepare, train, blend, write, submit): fold schemes
(:mod:`.splits`), the fold runner (:mod:`.cv`), blending (:mod:`.ensemble`), the summary, and folds as Ray
tasks (:mod:`.ray`)."""
