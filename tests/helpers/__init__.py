"""What several test modules share: where the real data lives (paths), small real competitions (sk_digits: an
adapter file and Kaggle CSVs; sk_competition: the same digits as an in-memory Competition), the digits tensors
the trainer tests learn on, and torch's own schedulers as references for kitbox's schedules. Test modules import
from here, never from each other."""
