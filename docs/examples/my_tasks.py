"""Task sets defined in your own module: taskset=my_tasks:robots or taskset=my_tasks:three_tasks
(with this directory on PYTHONPATH), or registered under the ``mtrl.tasksets`` entry points."""

from envs.tasksets import TaskSet, gymnasium_taskset

# a TaskSet object: gymnasium ids (checked here: they exist and share one action space)
robots = gymnasium_taskset("robots", ["Reacher-v5", "Swimmer-v5"])


# or a callable returning one: nothing is built until a run asks for it
def three_tasks() -> TaskSet:
    return TaskSet("three", ("reach-v3", "push-v3", "drawer-close-v3"))
