from traffic_replay.cli import main

main()
