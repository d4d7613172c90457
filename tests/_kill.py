"""A trainer callback that simulates a run killed at a given step (resume tests)."""


class Killed(Exception):
    pass


def kill_at(step_to_die):
    def callback(step, row):
        if step == step_to_die:
            raise Killed
    return callback
