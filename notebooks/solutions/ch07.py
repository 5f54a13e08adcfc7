"""Solutions to the exercises of chapter 7. Look only after trying!"""


def pareto_front(cost: dict[str, float], score: dict[str, float]) -> list[str]:
    """Exercise 7.1: the methods that no other method is at least as good as on both counts (cost and J&F)
    and strictly better on one; cheapest first."""
    front = []
    for m in cost:
        beaten = any(cost[o] <= cost[m] and score[o] >= score[m] and (cost[o] < cost[m] or score[o] > score[m])
                     for o in cost)
        if not beaten:
            front.append(m)
    return sorted(front, key=lambda m: (cost[m], -score[m], m))
