"""
The reusable core: runs of a wrapped program, from start to a final state.

- :mod:`.state`: the states of a run and the transitions between them;
- :mod:`.record`: a run's record (pure data, serialised to JSON);
- :mod:`.program`: what a wrapped program must say about itself;
- :mod:`.progress`: the progress lines a program prints;
- :mod:`.store`: the work folder on disk (one folder per run);
- :mod:`.process`: the ``ProcessProtocol`` that watches one child;
- :mod:`.manager`: starts, answers for, aborts and notifies runs.
"""
