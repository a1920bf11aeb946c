"""The class report: what an instructor reads after a batch (`grade report RESULTS/`).

    build       what the report says, as plain data (also the JSON file)
    causes      the cause a failed check's feedback names, for counting failures by cause
    similarity  pairs of submissions whose own code is alike (winnowed fingerprints)
    plots       matplotlib SVGs, readable without colour
    page        the one-file HTML page
    verb        `grade report` and write_class_report (also used by `grade ... --report`)

Torch-free, like the batch scheduler that may call it.
"""
