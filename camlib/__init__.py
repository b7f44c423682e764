"""camlib: the tested helpers behind the Class Activation Mapping teaching notebooks.

One module per idea, in the order the notebooks teach them::

    conv, pooling      notebooks 01-02 (convolution, pooling)
    models, data       the pretrained classifier and the shipped photos
    hooks, cam         notebooks 05-06 (hooks, GAP, class activation maps)
    viz, widgets       figures and interactive explorers

Import the modules you need explicitly, e.g. ``from camlib import cam, viz``.
"""

__version__ = "0.1.0"
