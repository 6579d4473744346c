"""What every benchmark prints over seeds: the mean and the sample standard deviation (0 for one seed)."""
import statistics


def mean_std(values, digits: int = 5) -> str:
    values = list(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} +- {spread:.{digits}f}"
