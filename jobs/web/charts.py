"""Server-rendered SVG charts for the console: nothing to download, nothing to run in the browser."""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from jobs.ops.stats import SeriesPoint

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 34, 38, 10, 22
COMPLETED_COLOUR, FAILED_COLOUR, RATE_COLOUR = "#198754", "#dc3545", "#fd7e14"


def _num(value: float) -> str:
    """A coordinate as SVG text (format_html escapes its arguments to text first, so format them here)."""
    return f"{value:.1f}"


def throughput_chart(points: list[SeriesPoint], *, title: str, label_format: str) -> SafeString:
    """Stacked bars (completed, failed) per period and the failure rate as a line on a 0-100 % axis."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    highest = max((point.completed + point.failed for point in points), default=0)
    peak = highest or 1  # the scale of an empty chart
    slot = plot_w / max(len(points), 1)
    bar_w = max(slot * 0.8, 1.0)
    parts = [
        format_html(
            '<svg class="throughput-chart" viewBox="0 0 {} {}" width="{}" height="{}" role="img" aria-label="{}">'
            "<title>{}</title>",
            WIDTH,
            HEIGHT,
            WIDTH,
            HEIGHT,
            title,
            title,
        ),
        format_html(
            '<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="#999"/>', LEFT, TOP + plot_h, LEFT + plot_w, TOP + plot_h
        ),
        format_html('<text x="{}" y="{}" font-size="10" text-anchor="end">{}</text>', LEFT - 4, TOP + 8, highest),
        format_html('<text x="{}" y="{}" font-size="10" text-anchor="end">0</text>', LEFT - 4, TOP + plot_h),
        format_html(
            '<text x="{}" y="{}" font-size="10" fill="{}">100 %</text>', LEFT + plot_w + 4, TOP + 8, RATE_COLOUR
        ),
    ]
    rate_points = []
    for index, point in enumerate(points):
        x = LEFT + index * slot + (slot - bar_w) / 2
        done_h = plot_h * point.completed / peak
        failed_h = plot_h * point.failed / peak
        rate = point.failure_rate
        label = point.start.strftime(label_format)
        tooltip = f"{label}: {point.completed} completed, {point.failed} failed"
        if rate is not None:
            tooltip += f" ({rate:.1%} failed)"
            rate_points.append(f"{_num(x + bar_w / 2)},{_num(TOP + plot_h * (1 - rate))}")
        parts.append(
            format_html(
                '<g class="bar"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/></g>',
                tooltip,
                _num(x),
                _num(TOP + plot_h - done_h),
                _num(bar_w),
                _num(done_h),
                COMPLETED_COLOUR,
                _num(x),
                _num(TOP + plot_h - done_h - failed_h),
                _num(bar_w),
                _num(failed_h),
                FAILED_COLOUR,
            )
        )
    if rate_points:
        parts.append(
            format_html(
                '<polyline class="failure-rate" points="{}" fill="none" stroke="{}" stroke-width="1.5"/>',
                " ".join(rate_points),
                RATE_COLOUR,
            )
        )
    if points:
        for index in (0, len(points) - 1):
            anchor = "start" if index == 0 else "end"
            x = LEFT if index == 0 else LEFT + plot_w
            parts.append(
                format_html(
                    '<text x="{}" y="{}" font-size="10" text-anchor="{}">{}</text>',
                    x,
                    HEIGHT - 6,
                    anchor,
                    points[index].start.strftime(label_format),
                )
            )
    parts.append(SafeString("</svg>"))
    # Every part above went through format_html, so joining them keeps them escaped.
    return mark_safe("".join(parts))  # noqa: S308
