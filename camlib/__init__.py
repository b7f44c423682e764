"""camlib: the tested helpers behind the Class Activation Mapping teaching notebooks.

One module per idea, in the order the notebooks teach them::

    conv, pooling                         notebooks 01-02 (convolution, pooling)
    digits, cost                          notebook 03 (MLP vs CNN: data, training, counting)
    filters, features, receptive_field    notebook 04 (shallow vs deep layers)
    benchmark, gapnet, metrics            notebooks 05, 07 (weakly-supervised localization)
    models, data                          the pretrained classifier and the shipped photos
    hooks, cam                            notebook 06 (class activation maps)
    viz, widgets                          figures and interactive explorers

Import the modules you need explicitly, e.g. ``from camlib import cam, viz``.
"""

__version__ = "0.1.0"
