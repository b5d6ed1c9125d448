"""``torchvision-mix compare``: a miniature of the papers' comparison tables, with paired statistics.

Every method trains the same network over the same seeds. For a given seed every method starts
from the same initial weights and sees the same data order (both fingerprinted in the CSV), so
the seeds are paired: the table gives each method's mean ± std and its mean difference to no
mixing with a 95 % t interval over the paired seeds. ``--epochs 30,60,150,300`` repeats it at
each budget (the budget sweep); ``--jobs N`` runs the trainings in N processes, with identical
results for any N.

The modules: :mod:`.data` (cluttered digits, CIFAR-10, image folders), :mod:`.methods` (the
registry), :mod:`.training` (settings, networks, jobs), :mod:`.statistics` and :mod:`.report`.
"""

from .data import CommandError, Data, clutter_digits, load_cluttered_digits, load_data
from .methods import DEFAULT_METHODS, METHODS, PRESETS, MixContext, build_mix, parse_methods
from .report import check_write_target, markdown_table, section, write_report
from .statistics import paired_difference, summarize, t_quantile
from .training import DATASET_DEFAULTS, Settings, check_settings, run_compare

__all__ = [
    "DATASET_DEFAULTS",
    "DEFAULT_METHODS",
    "METHODS",
    "PRESETS",
    "CommandError",
    "Data",
    "MixContext",
    "Settings",
    "build_mix",
    "check_settings",
    "check_write_target",
    "clutter_digits",
    "load_cluttered_digits",
    "load_data",
    "markdown_table",
    "paired_difference",
    "parse_methods",
    "run_compare",
    "section",
    "summarize",
    "t_quantile",
    "write_report",
]
