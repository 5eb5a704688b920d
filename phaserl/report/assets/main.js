// Header and page assembly: a run report or an evaluation report, from the payload's kind.
// ---- page --------------------------------------------------------------------------------------
function header(links) {
  const when = P.generated ? `generated ${P.generated}` : "";
  return el("header", {}, el("h1", {text: P.title}),
    el("div", {cls: "sub"}, P.source ? el("code", {text: P.source}) : null, " ", when,
      P.watch ? ` · reloads every ${P.watch} s (--watch)` : ""),
    el("nav", {}, links.map(([id, t]) => el("a", {href: "#" + id, onclick: e => { e.preventDefault(); document.getElementById(id).scrollIntoView(); }, text: t}))));
}

function main() {
  const parts = [];
  if (P.kind === "eval") {
    parts.push(header([["scores", "scores"], ["breakdown", "categories"], ["items", "items"]]),
      scoresSection(), breakdownSection(), browserSection("items", "Items and responses", "benchmark"));
  } else {
    // a run that has only started shows what it has (an evaluation before training, the first samples)
    parts.push(header([["stages", "stages"], ["curves", "curves"], ["eval", "evaluation"], ["rollouts", "rollouts"]]),
      stageSection(), curvesSection(), evalSection(), browserSection("rollouts", "Rollouts", "stage"));
  }
  app.replaceChildren(...parts);
}
main();
