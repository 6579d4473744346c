"""What a run reads and writes: atomic files and the ledger (:mod:`.runs`), fold fingerprints
(:mod:`.fingerprint`), the Kaggle client and data discovery (:mod:`.kaggle`), and checked submissions
(:mod:`.submission`)."""
