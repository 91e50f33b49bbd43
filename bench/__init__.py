from pathlib import Path


def landing_dir(root: Path, customers: int, seed: int) -> Path:
    """Where a generated landing zone is cached: one per size, seed and generator version, so a
    newer generator never reuses older data."""
    from synthetic import GENERATOR_VERSION

    return root / f"landing-{customers}-{seed}-v{GENERATOR_VERSION}"
