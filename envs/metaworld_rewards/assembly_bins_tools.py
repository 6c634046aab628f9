"""(being written)"""

REWARDS: dict = {}
