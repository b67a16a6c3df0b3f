"""Write a FOREIGN dataset: records another team might have made, which ``validate`` must judge cold.

Nothing here comes from pools/: the Korean is composed word by word from the lists below with a seeded
RNG (place, time, company, manner, object, action, consequence, encouragement), so nearly every output
sentence is new and the checks cannot lean on repetition the way they can on our own builds. A known
share of records carries a planted defect (glued spacing, English, JSON outputs, a wrong number of
challenges, over-long or emoji-less feedback, exact and near copies of earlier records), so the findings
are not trivial; :func:`write_foreign` returns how many of each it planted.

    .venv/bin/python bench/foreign_data.py bench/out/foreign.jsonl --records 100000
    .venv/bin/python bench/foreign_data.py bench/out/foreign_1g.jsonl --bytes 1000000000
"""

from __future__ import annotations

import argparse
import random
import re
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from kochallenge_data.josa import attach_particle

# ---------------------------------------------------------------------------------------------------------------
# Vocabulary. {o} is the object, {o을} the object with its agreeing particle (을/를, 은/는, 이/가, 과/와, 으로/로).

LOCATIONS = [
    "서울 도심",
    "항구 도시",
    "시골 마을",
    "신도시",
    "대학가",
    "섬마을",
    "산골",
    "공단 지역",
    "바닷가 마을",
    "전원주택 단지",
    "구도심 골목",
    "강변 아파트",
    "읍내",
    "역세권 원룸촌",
]
JOBS = [
    "간호사",
    "대학생",
    "배달 기사",
    "초등 교사",
    "개발자",
    "자영업자",
    "전업주부",
    "공무원",
    "요리사",
    "택시 기사",
    "디자이너",
    "간병인",
    "은행원",
    "연구원",
    "프리랜서",
    "물류센터 직원",
    "편의점 점주",
    "사회복지사",
    "농부",
    "미용사",
    "작가",
    "경비원",
    "약사",
    "헬스 트레이너",
]
INTERESTS = [
    "채식",
    "자전거",
    "업사이클링",
    "텃밭 가꾸기",
    "캠핑",
    "미니멀 라이프",
    "중고 거래",
    "에너지 절약",
    "물 아끼기",
    "동네 산책",
    "반려식물",
    "공정 무역",
    "로컬 푸드",
    "기후 공부",
    "플라스틱 줄이기",
    "등산",
]

GROUPS: dict[str, list[str]] = {
    "container": [
        "유리병",
        "플라스틱 통",
        "페트병",
        "우유갑",
        "요구르트병",
        "반찬통",
        "음료 캔",
        "배달 용기",
        "두부 용기",
        "소스병",
        "잼병",
        "아이스크림 통",
        "세제 통",
        "샴푸 통",
    ],
    "paper": [
        "택배 상자",
        "종이 쇼핑백",
        "신문지",
        "영수증",
        "지난 달력",
        "종이 완충재",
        "다 쓴 공책",
        "전단지",
        "우편 봉투",
        "포장지",
        "과자 상자",
        "달걀판",
    ],
    "food": [
        "남은 밥",
        "시든 채소",
        "식빵 끄트머리",
        "두부",
        "제철 나물",
        "콩나물",
        "감자",
        "버섯",
        "양배추",
        "애호박",
        "대파",
        "당근",
        "고구마",
        "브로콜리",
    ],
    "device": [
        "모니터",
        "셋톱박스",
        "전기밥솥",
        "공유기",
        "전기장판",
        "가습기",
        "선풍기",
        "노트북 충전기",
        "스피커",
        "전자레인지",
        "정수기",
        "커피 머신",
    ],
    "clothes": [
        "청바지",
        "낡은 티셔츠",
        "겨울 외투",
        "셔츠",
        "니트 조끼",
        "원피스",
        "작업복",
        "잠옷",
        "반바지",
        "블라우스",
        "앞치마",
        "교복",
    ],
    "place": [
        "회사",
        "학교",
        "시장",
        "도서관",
        "병원",
        "은행",
        "체육관",
        "동네 마트",
        "약국",
        "우체국",
        "단골 카페",
        "공원",
        "주민 센터",
        "학원",
    ],
    "room": ["거실", "부엌", "욕실", "베란다", "현관", "공부방", "사무실", "회의실", "탕비실", "창고"],
    "outdoor": [
        "동네 공원",
        "하천",
        "뒷산",
        "해변",
        "놀이터",
        "산책로",
        "등굣길",
        "골목길",
        "버스 정류장",
        "캠퍼스",
        "강둑",
        "시장 골목",
    ],
    "meal": ["점심", "저녁", "아침", "간식", "도시락", "회식 메뉴", "주말 식사", "야식", "브런치", "반찬"],
}
# Single-use things and what replaces them.
SWAPS = [
    ("종이컵", "머그잔"),
    ("비닐봉지", "장바구니"),
    ("물티슈", "손수건"),
    ("플라스틱 빨대", "스테인리스 빨대"),
    ("비닐 랩", "밀랍 랩"),
    ("지퍼백", "유리 밀폐 용기"),
    ("일회용 수저", "개인 수저"),
    ("나무젓가락", "휴대용 젓가락"),
    ("생수병", "텀블러"),
    ("키친타월", "면 행주"),
    ("일회용 면도기", "날을 가는 면도기"),
    ("플라스틱 칫솔", "대나무 칫솔"),
    ("액체 세제", "고체 세제"),
]


@dataclass(frozen=True)
class Action:
    """One challenge idea: a title, its "-면" clause, its "-보세요" suggestion, what it is about."""

    title: str
    cond: str
    suggest: str
    group: str  # a GROUPS key, or "swap"
    domain: str  # picks the consequences that fit


ACTIONS = [
    Action("{o} 다시 쓰기", "{o을} 다시 쓰면", "{o을} 다시 써 보세요", "container", "waste"),
    Action("{o} 헹궈서 내놓기", "{o을} 헹궈서 내놓으면", "{o을} 헹궈서 내놓아 보세요", "container", "waste"),
    Action(
        "{o} 모아서 회수하기", "{o을} 모아서 회수함에 넣으면", "{o을} 모아서 회수함에 넣어 보세요", "container", "waste"
    ),
    Action("{o} 씻어서 말리기", "{o을} 씻어서 말려 두면", "{o을} 씻어서 말려 두세요", "container", "waste"),
    Action("{o} 펴서 묶기", "{o을} 펴서 묶어 내놓으면", "{o을} 펴서 묶어 보세요", "paper", "waste"),
    Action("{o} 메모지로 쓰기", "{o을} 메모지로 쓰면", "{o을} 메모지로 써 보세요", "paper", "waste"),
    Action("{o} 테이프 떼기", "{o}에 붙은 테이프를 떼어 내면", "{o}에 붙은 테이프를 떼어 보세요", "paper", "waste"),
    Action("{o} 포장에 다시 쓰기", "{o을} 선물 포장에 다시 쓰면", "{o을} 선물 포장에 다시 써 보세요", "paper", "waste"),
    Action("{o} 끝까지 먹기", "{o을} 끝까지 먹으면", "{o을} 끝까지 먹어 보세요", "food", "food"),
    Action("{o} 얼려 두기", "{o을} 손질해서 얼려 두면", "{o을} 손질해서 얼려 두세요", "food", "food"),
    Action("{o} 넣어 볶음밥 만들기", "{o을} 넣어 볶음밥을 만들면", "{o을} 넣어 볶음밥을 만들어 보세요", "food", "food"),
    Action("{o} 필요한 만큼만 사기", "{o을} 필요한 만큼만 사면", "{o을} 필요한 만큼만 사 보세요", "food", "food"),
    Action("{o} 플러그 뽑기", "{o} 플러그를 뽑아 두면", "{o} 플러그를 뽑아 두세요", "device", "energy"),
    Action("{o} 절전 모드 켜기", "{o}의 절전 모드를 켜 두면", "{o}의 절전 모드를 켜 보세요", "device", "energy"),
    Action("{o} 고쳐서 쓰기", "{o을} 고쳐서 쓰면", "{o을} 고쳐서 써 보세요", "device", "waste"),
    Action("{o} 사용 시간 줄이기", "{o} 사용 시간을 줄이면", "{o} 사용 시간을 줄여 보세요", "device", "energy"),
    Action("{o} 수선해서 입기", "{o을} 수선해서 입으면", "{o을} 수선해서 입어 보세요", "clothes", "waste"),
    Action("{o} 이웃과 나누기", "{o을} 이웃과 나누면", "{o을} 이웃과 나눠 보세요", "clothes", "waste"),
    Action("{o} 모아서 빨기", "{o을} 모아서 한 번에 빨면", "{o을} 모아서 한 번에 빨아 보세요", "clothes", "energy"),
    Action("{o} 중고로 사기", "{o을} 중고로 사면", "{o을} 중고로 사 보세요", "clothes", "waste"),
    Action("{a} 대신 {b} 쓰기", "{a} 대신 {b을} 쓰면", "{a} 대신 {b을} 써 보세요", "swap", "waste"),
    Action("{b} 챙겨 다니기", "{b을} 챙겨 다니면", "{b을} 챙겨 다녀 보세요", "swap", "waste"),
    Action("{a} 안 받기", "{a을} 받지 않으면", "{a을} 정중히 사양해 보세요", "swap", "waste"),
    Action("{o}까지 걸어가기", "{o}까지 걸어가면", "{o}까지 걸어가 보세요", "place", "move"),
    Action("{o}에 자전거로 가기", "{o}에 자전거를 타고 가면", "{o}에 자전거를 타고 가 보세요", "place", "move"),
    Action("{o}에 버스로 가기", "{o}에 버스를 타고 가면", "{o}에 버스를 타고 가 보세요", "place", "move"),
    Action("{o} 불 끄기", "{o}에서 나올 때 불을 끄면", "{o}에서 나올 때 불을 꺼 보세요", "room", "energy"),
    Action(
        "{o} 난방 온도 낮추기", "{o} 난방 온도를 한 도 낮추면", "{o} 난방 온도를 한 도 낮춰 보세요", "room", "energy"
    ),
    Action("{o} 쓰레기 줍기", "{o}에서 쓰레기를 주우면", "{o}에서 쓰레기를 주워 보세요", "outdoor", "nature"),
    Action("{o}에 꽃씨 뿌리기", "{o}에 꽃씨를 뿌리면", "{o}에 꽃씨를 뿌려 보세요", "outdoor", "nature"),
    Action("{o} 채식으로 먹기", "{o을} 채식으로 먹으면", "{o을} 채식으로 먹어 보세요", "meal", "food"),
    Action("{o} 남기지 않기", "{o을} 남기지 않으면", "{o을} 먹을 만큼만 덜어 보세요", "meal", "food"),
]

TIMES = [
    "아침에 출근하기 전에",
    "퇴근한 뒤에",
    "점심시간에",
    "주말 오전에",
    "장을 보고 온 날에",
    "저녁을 먹은 뒤에",
    "잠들기 전에",
    "쉬는 날에",
    "비가 오는 날에도",
    "바쁜 평일에도",
    "한 달에 한 번",
    "일주일에 두 번",
    "매주 수요일에",
    "월요일마다",
    "손님이 다녀간 뒤에",
    "택배를 받은 날에",
    "월급날에",
    "휴가 때",
    "명절 연휴에",
    "새 학기에는",
    "날씨가 좋은 날에",
    "여유가 있는 저녁에",
    "출근길에",
    "외출하기 전에",
    "청소하는 날에",
    "분리배출하는 날에",
    "아이가 잠든 뒤에",
    "친구가 놀러 온 날에",
    "장마철에",
    "한겨울에도",
]
COMPANY = [
    "가족과 함께",
    "동료와 같이",
    "아이와 함께",
    "룸메이트와",
    "이웃과 함께",
    "친구와 같이",
    "혼자서도",
    "연인과 함께",
]
MANNER = ["조금씩", "꾸준히", "가볍게", "틈틈이", "천천히", "부담 없이", "습관처럼", "하나씩", "즐겁게", "차근차근"]
PLACES = [
    "집에서", "회사에서", "학교에서", "동네에서", "사무실에서", "부엌에서", "마트에서", "카페에서", "공원에서",
    "현관 앞에서", "베란다에서", "캠퍼스에서", "시장에서", "동네 도서관에서", "아파트 단지에서", "작업실에서",
    "가게에서", "텃밭에서", "본가에서", "기숙사에서",
]  # fmt: skip
CONSEQUENCES: dict[str, list[str]] = {
    "waste": [
        "버려지는 쓰레기가 눈에 띄게 줄어요",
        "분리배출이 한결 쉬워져요",
        "자원이 한 번 더 쓰이게 돼요",
        "새 물건을 덜 사게 돼요",
        "매립되는 쓰레기가 줄어들어요",
        "재활용 선별이 쉬워져요",
        "소각되는 쓰레기가 줄어들어요",
        "쓰레기봉투를 훨씬 늦게 채우게 돼요",
    ],
    "food": [
        "음식물 쓰레기가 확 줄어요",
        "장보기 비용을 아낄 수 있어요",
        "냉장고 정리가 쉬워져요",
        "버리는 식재료가 거의 없어요",
        "식탁이 더 건강해져요",
        "음식에 담긴 탄소까지 아낄 수 있어요",
    ],
    "energy": [
        "전기 요금이 조금씩 줄어요",
        "대기 전력을 아낄 수 있어요",
        "발전소가 내뿜는 탄소가 줄어요",
        "난방비 걱정을 덜 수 있어요",
        "에너지를 헛되이 쓰지 않게 돼요",
        "관리비 고지서가 가벼워져요",
    ],
    "move": [
        "자동차 배기가스가 줄어요",
        "출퇴근길이 운동 시간이 돼요",
        "기름값을 아낄 수 있어요",
        "동네 구석구석을 알게 돼요",
        "몸이 한결 가벼워져요",
        "도로 위 탄소 배출이 줄어요",
    ],
    "nature": [
        "동네가 몰라보게 깨끗해져요",
        "새와 곤충이 다시 찾아와요",
        "이웃과 인사를 나누게 돼요",
        "산책길이 더 즐거워져요",
        "바다로 흘러가는 쓰레기가 줄어요",
        "아이들이 뛰놀 곳이 깨끗해져요",
    ],
    "any": [
        "지구에 주는 부담이 줄어요",
        "작은 변화지만 효과가 커요",
        "이웃에게도 좋은 본보기가 돼요",
        "아이에게도 좋은 공부가 돼요",
        "마음이 뿌듯해져요",
        "자연스럽게 절약 습관이 생겨요",
        "환경을 지키는 데 보탬이 돼요",
        "한 달이면 차이가 확실히 보여요",
    ],
}
# Opens a second sentence: "even if it is a bother, ..."
CONCESSIVE = [
    "처음에는 번거로워도",
    "조금 귀찮더라도",
    "작은 일 같아도",
    "바쁜 날이라도",
    "하루 한 번만이라도",
    "서툴러도",
    "가끔이라도",
    "짧게라도",
]
COUNT_WORDS = {2: "두", 3: "세", 4: "네"}
RECOMMEND_BASE = [
    "{loc}에서 지내는 {job} 분이 {start} {place} {manner} 해 볼 만한 {interest} 챌린지를 골라 봤어요.",
    "{interest}에 관심이 많은 {job} 분께 {start} {place} 시작하기 좋은 실천을 모았어요.",
    "{job으로} 바쁘게 지내는 {loc} 분도 {place} {manner} 해 볼 수 있는 챌린지예요.",
    "{loc}의 생활에 어울리는 {interest} 실천을 {count} 가지 모아 {start} 권해 드려요.",
    "{interest을} 좋아하는 {job} 분이라면 {start} {company} {manner} 시작해 보세요.",
    "{loc}에 사는 {job} 분께 {interest과} 잘 어울리는 실천 {count} 가지를 {start} 추천해요.",
]
RECOMMEND_FREE = [
    "{topic}에 맞춰 {start} {place} {manner} 해 볼 만한 챌린지를 {count} 가지 골랐어요.",
    "{topic}에 도움이 되는 실천을 {start} {company} {manner} 해 보세요.",
    "{topic을} 덜어 줄 챌린지를 {start} {place} {company} 시작해 보세요.",
    "{topic} 고민이라면 {start} {place} {manner} 바꿔 볼 수 있는 습관이 있어요.",
]
STARTS = [
    "오늘부터",
    "이번 주부터",
    "내일 아침부터",
    "이번 주말부터",
    "지금 바로",
    "다음 달부터",
    "새해부터",
    "퇴근길부터",
]
# A second recommend sentence points at one of the challenges: "{title} is a good place to start."
POINTERS = [
    "특히 {t은} {start} {place} 바로 해 볼 수 있어요.",
    "그중에서 {t}부터 {start} {manner} 시작해 보세요.",
    "{t은} {place} {company} 하면 더 즐거워요.",
]
RECOMMEND_EMOJI = ["🌱", "🌍", "♻️", "💚", "🌿", "😊", "🚲", "🌳"]
# What a user writes, and the topic a reply can name.
SITUATIONS = [
    ("요즘 배달 음식을 자주 시켜 먹어요.", "배달 쓰레기"),
    ("회사에서 종이컵을 너무 많이 써요.", "일회용 컵"),
    ("이사 온 뒤로 전기 요금이 많이 나와요.", "전기 요금 걱정"),
    ("아이가 환경에 관심을 갖기 시작했어요.", "아이와 함께하는 실천"),
    ("주말마다 캠핑을 다니는데 쓰레기가 많이 생겨요.", "캠핑 쓰레기"),
    ("혼자 살아서 음식이 자주 남아요.", "남는 음식"),
    ("출퇴근 거리가 가까운 편이에요.", "가까운 출퇴근길"),
    ("옷장이 옷으로 가득 찼어요.", "옷장 정리"),
    ("텃밭을 막 시작했어요.", "텃밭 생활"),
    ("카페에 자주 가는 편이에요.", "카페 나들이"),
    ("택배 상자가 현관에 쌓여 있어요.", "택배 상자"),
    ("동네 공원에 쓰레기가 많아 속상해요.", "공원 쓰레기"),
    ("겨울마다 난방비가 걱정이에요.", "난방비 걱정"),
    ("채식을 조금씩 해 보고 싶어요.", "채식 시작"),
    ("플라스틱을 줄이고 싶은데 막막해요.", "플라스틱 줄이기"),
    ("회사 탕비실에 일회용품이 너무 많아요.", "탕비실 일회용품"),
]
QUESTIONS = [
    "어떤 것부터 하면 좋을까요?",
    "쉽게 할 수 있는 챌린지를 추천해 주세요.",
    "부담 없는 실천 방법이 있을까요?",
    "매일 할 만한 습관을 알려 주세요.",
    "가족과 같이 할 만한 게 있을까요?",
    "돈이 들지 않는 방법이 궁금해요.",
    "바로 시작할 수 있는 걸 알려 주세요.",
    "작은 것부터 해 보고 싶어요.",
]
INSTRUCTIONS = {
    "base_info": [
        '지역, 직업, 관심사가 쉼표로 주어지면 그 사람에게 맞는 친환경 챌린지를 추천하세요. 첫 줄에는 추천 문장을, 그 아래에는 "제목: 설명" 형식의 챌린지를 한 줄씩 쓰세요.',
        "입력된 사용자 정보를 보고 생활 속 환경 실천 세 가지를 제안해 주세요. 첫 줄은 추천 문장이고, 나머지 줄은 제목과 설명을 콜론으로 나누어 씁니다.",
        '사용자 프로필(지역, 직업, 관심사)에 어울리는 환경 챌린지를 골라 주세요. 번호 없이 한 줄에 하나씩 "제목: 설명"으로 적어 주세요.',
        "당신은 환경 습관 코치입니다. 주어진 사용자에게 해요체로 추천 문장을 쓰고, 이어서 챌린지를 한 줄에 하나씩 제목과 설명으로 알려 주세요.",
    ],
    "free_text": [
        "사용자의 고민을 읽고 도움이 될 환경 챌린지를 추천하세요. 첫 줄은 공감과 추천, 다음 줄부터는 제목: 설명 형식입니다.",
        '사용자가 남긴 메시지에 답하며 실천할 만한 챌린지를 제안해 주세요. 각 챌린지는 "제목: 설명" 한 줄로 씁니다.',
        "메시지에 맞는 친환경 실천을 골라 주세요. 추천 문장 한 줄 뒤에 챌린지를 한 줄씩 쓰고, 목록 기호는 쓰지 마세요.",
    ],
    "feedback": [
        "한 주 동안의 챌린지 기록을 보고 응원하는 피드백을 써 주세요. 이모지를 넣고 100자를 넘기지 마세요.",
        "JSON으로 된 주간 기록을 읽고 해요체로 짧게 칭찬하고 격려해 주세요. 이모지를 꼭 넣어 주세요.",
        "사용자의 이번 주 성공과 실패를 살펴 따뜻한 한두 문장을 써 주세요. 100자 이내, 이모지 포함입니다.",
    ],
}
FEEDBACK_WHEN = [
    "이번 주에도",
    "바쁜 와중에도",
    "주말까지",
    "매일같이",
    "비 오는 날에도",
    "월요일부터",
    "쉬는 날에도",
    "출근 전에",
    "퇴근 후에도",
    "주중 내내",
    "피곤한 날에도",
    "야근한 날에도",
]
FEEDBACK_SUCCESS = [
    "{when} {t을} 해내셨네요!",
    "{when} {company} {t을} {n}일 내내 지키셨군요!",
    "{t}, {when} {company} 멋지게 성공했어요!",
    "{when} {t을} {n}번이나 챙기셨어요!",
]
FEEDBACK_GROUP = [
    "{when} {t} 인증을 {n}번이나 하셨어요!",
    "{t}에서 {when} {n}번 인증하셨네요!",
    "{when} {t} 모임에 {n}번 함께하셨어요!",
]
FEEDBACK_FAILURE = [
    "{t은} {start} 다시 도전해 봐요.",
    "{t은} 아쉽지만 {start} 다시 하면 돼요.",
    "{t도} {company} 하면 곧 익숙해질 거예요.",
    "{t은} {company} 천천히 다시 해 봐요.",
]
FEEDBACK_PRAISE = [
    "정말 대단해요.", "큰 힘이 될 거예요.", "주변에도 좋은 영향을 줄 거예요.", "오래 기억에 남을 거예요.",
    "지구에 보탬이 되고 있어요.", "멋진 습관으로 자라고 있어요.",
]  # fmt: skip
FEEDBACK_CLOSING = [
    "다음 주에도 {company} {t과} 함께해요!",
    "{t도} {start} 또 만나요.",
    "이 기세로 {company} {t}까지 이어 가 봐요!",
    "{t은} {when} 응원할게요!",
    "{t} 덕분에 {when} 지구가 웃어요.",
]
FEEDBACK_EMOJI = ["🎉", "👏", "🌱", "💪", "🌍", "✨", "😊", "💚", "🙌", "🌿", "♻️", "👍"]
# Planted defects: what is changed and the code validate should report for it.
ENGLISH = ["Tumbler", "eco bag", "PET", "zero waste", "reuse", "upcycling", "plogging"]
FEEDBACK_LIMIT = 100


# ---------------------------------------------------------------------------------------------------------------
# Composition


_SLOT = re.compile(r"\{([a-z]+)(을|은|이|과|으로|도)?\}")
_PAIRS = {"을": "을/를", "은": "은/는", "이": "이/가", "과": "과/와", "으로": "으로/로"}


def fill(template: str, **words: str) -> str:
    """Replace {name} and {name+particle} slots ({o을}, {t은}, {job으로} ...) with words and agreeing particles."""

    def slot(match: re.Match[str]) -> str:
        word, particle = words[match.group(1)], match.group(2)
        if particle is None:
            return word
        return word + "도" if particle == "도" else attach_particle(word, _PAIRS[particle])

    return _SLOT.sub(slot, template)


def pick_object(action: Action, rng: random.Random) -> dict[str, str]:
    if action.group == "swap":
        used, better = rng.choice(SWAPS)
        return {"a": used, "b": better}
    return {"o": rng.choice(GROUPS[action.group])}


def consequence(action: Action, rng: random.Random) -> str:
    pool = CONSEQUENCES[action.domain] if rng.random() < 0.7 else CONSEQUENCES["any"]
    return rng.choice(pool)


def maybe(items: list[str], rng: random.Random, chance: float = 0.5) -> str:
    return rng.choice(items) if items and rng.random() < chance else ""


def sentence(*parts: str) -> str:
    return " ".join(p for p in parts if p) + "."


def description(action: Action, words: dict[str, str], rng: random.Random) -> str:
    """One or two sentences; their optional slots (place, company, manner) keep nearly every one new."""
    cond = fill(action.cond, **words)
    suggest = fill(action.suggest, **words)
    # Actions that already say where (walk to the library, the living-room light) take no second place.
    places = [] if action.group in ("place", "room", "outdoor") else PLACES

    def result() -> str:  # "if you do X, Y happens"
        return sentence(
            rng.choice(TIMES), maybe(places, rng, 0.7), maybe(COMPANY, rng, 0.7), cond, consequence(action, rng)
        )

    def advice() -> str:  # "try doing X"
        return sentence(
            rng.choice(TIMES), maybe(places, rng, 0.7), maybe(COMPANY, rng, 0.7), maybe(MANNER, rng, 0.8), suggest
        )

    first_is_result = rng.random() < 0.5
    first = result() if first_is_result else advice()
    if rng.random() < 0.45:
        return first
    # The second sentence says it the other way round: advice after a result, a result after advice.
    if first_is_result:
        return f"{first} {advice()}"
    return f"{first} {rng.choice(CONCESSIVE)} {result()}"


def challenge_lines(count: int, rng: random.Random) -> list[tuple[str, str]]:
    actions = rng.sample(ACTIONS, count)
    lines = []
    for action in actions:
        words = pick_object(action, rng)
        lines.append((fill(action.title, **words), description(action, words, rng)))
    return lines


def recommend_sentence(
    task: str, profile: dict[str, str], lines: list[tuple[str, str]], rng: random.Random, topic: str = ""
) -> str:
    slots = {
        "count": COUNT_WORDS.get(len(lines), "몇"),
        "manner": rng.choice(MANNER),
        "start": rng.choice(STARTS),
        "company": rng.choice(COMPANY),
        "place": rng.choice(PLACES),
    }
    if task == "base_info":
        sentence = fill(rng.choice(RECOMMEND_BASE), **profile, **slots)
    else:
        sentence = fill(rng.choice(RECOMMEND_FREE), topic=topic, **slots)
    if rng.random() < 0.5:
        sentence += " " + fill(rng.choice(POINTERS), t=rng.choice(lines)[0], **slots)
    if rng.random() < 0.3:
        sentence += " " + rng.choice(RECOMMEND_EMOJI)
    return sentence


def week_input(rng: random.Random) -> tuple[str, list[tuple[str, bool]], list[tuple[str, int]]]:
    """A weekly record in the service's JSON shape, and the titles the feedback talks about."""
    personal = []
    for _ in range(rng.randint(1, 3)):
        action = rng.choice(ACTIONS)
        personal.append((fill(action.title, **pick_object(action, rng)), rng.random() < 0.7))
    groups = []
    for _ in range(rng.choice((0, 0, 1, 2))):
        action = rng.choice(ACTIONS)
        groups.append((fill(action.title, **pick_object(action, rng)), rng.randint(0, 5)))
    day = rng.randint(1, 20)
    data = {
        "memberId": rng.randint(1, 2_000_000),
        "personalChallenges": [
            {"id": rng.randint(1, 99_999), "title": title, "isSuccess": ok} for title, ok in personal
        ],
        "groupChallenges": [
            {
                "id": rng.randint(1, 99_999),
                "title": title,
                "startDate": f"2025-03-{day:02d}T00:00:00",
                "endDate": f"2025-03-{day + 7:02d}T23:59:59",
                "submissions": [
                    {"isSuccess": True, "submittedAt": f"2025-03-{day + k:02d}T0{k}:30:00"} for k in range(count)
                ],
            }
            for title, count in groups
        ],
    }
    return orjson.dumps(data).decode(), personal, groups


def feedback_text(personal: list[tuple[str, bool]], groups: list[tuple[str, int]], rng: random.Random) -> str:
    pieces: list[str] = []
    for title, ok in personal:
        if ok:
            when, days = rng.choice(FEEDBACK_WHEN), str(rng.randint(2, 7))
            pieces.append(fill(rng.choice(FEEDBACK_SUCCESS), t=title, when=when, n=days, company=rng.choice(COMPANY)))
            pieces.append(rng.choice(FEEDBACK_EMOJI))
        else:
            pieces.append(
                fill(rng.choice(FEEDBACK_FAILURE), t=title, start=rng.choice(STARTS), company=rng.choice(COMPANY))
            )
    for title, count in groups:
        if count:
            pieces.append(fill(rng.choice(FEEDBACK_GROUP), t=title, n=str(count), when=rng.choice(FEEDBACK_WHEN)))
    named = rng.choice([*personal, *((t, True) for t, _ in groups)])[0]
    closing = fill(
        rng.choice(FEEDBACK_CLOSING),
        t=named,
        company=rng.choice(COMPANY),
        start=rng.choice(STARTS),
        when=rng.choice(FEEDBACK_WHEN),
    )
    pieces += [closing, rng.choice(FEEDBACK_EMOJI)]
    text = " ".join(pieces)
    # Keep within the limit the way a careful writer would: drop middle pieces, keep the closing.
    while len(text) > FEEDBACK_LIMIT and len(pieces) > 2:
        pieces.pop(-3)
        text = " ".join(pieces)
    return text


# ---------------------------------------------------------------------------------------------------------------
# Records and planted defects


@dataclass
class Composer:
    rng: random.Random
    planted: Counter[str]
    recent: deque[dict[str, str]]

    def record(self) -> dict[str, str]:
        roll = self.rng.random()
        if self.recent and roll < 0.01:
            self.planted["duplicate"] += 1
            return dict(self.rng.choice(self.recent))
        if self.recent and roll < 0.02:
            near = self._near_copy(self.rng.choice(self.recent))
            if near is not None:
                self.planted["near_duplicate"] += 1
                return near
        task = self.rng.choices(("base_info", "free_text", "feedback"), weights=(4, 3, 3))[0]
        made = self._feedback() if task == "feedback" else self._recommendation(task)
        self.recent.append(made)
        return made

    def _recommendation(self, task: str) -> dict[str, str]:
        rng = self.rng
        profile = {"loc": rng.choice(LOCATIONS), "job": rng.choice(JOBS), "interest": rng.choice(INTERESTS)}
        situation, topic = rng.choice(SITUATIONS)
        if task == "base_info":
            input_text = f"{profile['loc']}, {profile['job']}, {profile['interest']}"
        else:
            input_text = f"{situation} {rng.choice(QUESTIONS)}"
        count = 3
        if rng.random() < 0.02:
            count = rng.choice((2, 4))
            self.planted["challenge_count"] += 1
        lines = challenge_lines(count, rng)
        recommend = recommend_sentence(task, profile, lines, rng, topic)
        roll = rng.random()
        if roll < 0.02:
            self.planted["spacing"] += 1
            line = rng.randrange(count)
            title, desc = lines[line]
            lines[line] = (title, glue(desc, rng))
        elif roll < 0.04:
            self.planted["non_korean"] += 1
            line = rng.randrange(count)
            title, desc = lines[line]
            lines[line] = (f"{rng.choice(ENGLISH)} {title}", desc)
        output = "\n".join([recommend, *(f"{t}: {d}" for t, d in lines)])
        if rng.random() < 0.02:
            self.planted["json_output"] += 1
            output = as_json(recommend, lines, rng)
        return {"instruction": rng.choice(INSTRUCTIONS[task]), "input": input_text, "output": output}

    def _feedback(self) -> dict[str, str]:
        rng = self.rng
        input_text, personal, groups = week_input(rng)
        output = feedback_text(personal, groups, rng)
        roll = rng.random()
        if roll < 0.08:
            self.planted["feedback_too_long"] += 1
            while len(output) <= FEEDBACK_LIMIT:
                title = rng.choice(personal)[0]
                extra = f"{rng.choice(FEEDBACK_WHEN)} {attach_particle(title, '을/를')} 챙긴 마음이 {rng.choice(FEEDBACK_PRAISE)}"
                output = f"{output} {extra}"
        elif roll < 0.10:
            self.planted["feedback_no_emoji"] += 1
            output = " ".join(p for p in output.split(" ") if p not in FEEDBACK_EMOJI)
        elif roll < 0.12:
            self.planted["spacing"] += 1
            output = glue(output, rng)
        return {"instruction": rng.choice(INSTRUCTIONS["feedback"]), "input": input_text, "output": output}

    def _near_copy(self, record: dict[str, str]) -> dict[str, str] | None:
        """The same record with one word changed: still over 0.8 Jaccard, no longer an exact copy."""
        words = record["output"].split(" ")
        if len(words) < 12:
            return None
        at = self.rng.randrange(1, len(words) - 1)
        swapped = self.rng.choice(MANNER)
        if words[at] == swapped or "\n" in words[at] or ":" in words[at]:
            return None
        words[at] = swapped
        return {**record, "output": " ".join(words)}


def glue(text: str, rng: random.Random) -> str:
    """Remove the spaces of one sentence (the commonest real defect), keeping emoji apart."""
    sentences = text.split(". ")
    at = rng.randrange(len(sentences))
    sentences[at] = "".join(sentences[at].split(" ")) if len(sentences[at].split(" ")) > 2 else sentences[at]
    glued = ". ".join(sentences)
    return glued if glued != text else "".join(text.split(" "))


def as_json(recommend: str, lines: list[tuple[str, str]], rng: random.Random) -> str:
    if rng.random() < 0.5:
        challenges = [{"title": t, "description": d} for t, d in lines]
        return orjson.dumps({"recommend": recommend, "challenges": challenges}).decode()
    return orjson.dumps({"text": "\n".join([recommend, *(f"{t}: {d}" for t, d in lines)])}).decode()


def iter_records(seed: int) -> Iterator[tuple[dict[str, str], Counter[str]]]:
    """Endless records; the counter beside each holds everything planted so far."""
    composer = Composer(random.Random(seed), Counter(), deque(maxlen=2000))
    while True:
        yield composer.record(), composer.planted


def write_foreign(
    path: Path,
    records: int | None = None,
    size_bytes: int | None = None,
    seed: int = 2026,
    as_array: bool | None = None,
) -> tuple[int, Counter[str]]:
    """Write ``records`` records (or records until ``size_bytes``); return the count and the planted defects."""
    if (records is None) == (size_bytes is None):
        raise ValueError("give exactly one of records and size_bytes")
    array = path.suffix == ".json" if as_array is None else as_array
    path.parent.mkdir(parents=True, exist_ok=True)
    planted: Counter[str] = Counter()
    with path.open("wb") as out:
        written = _write(out, iter_records(seed), array, records, size_bytes, planted)
    return written, planted


def _write(
    out: BinaryIO,
    source: Iterator[tuple[dict[str, str], Counter[str]]],
    array: bool,
    records: int | None,
    size_bytes: int | None,
    planted: Counter[str],
) -> int:
    done = bytes_out = 0
    if array:
        out.write(b"[\n")
    buffer: list[bytes] = []
    last: Counter[str] = Counter()
    stop: Callable[[], bool] = (
        (lambda: done >= records) if records is not None else (lambda: bytes_out >= (size_bytes or 0))
    )
    while not stop():
        record, last = next(source)
        line = orjson.dumps(record)
        if array and done:
            line = b",\n" + line
        buffer.append(line if array else line + b"\n")
        bytes_out += len(buffer[-1])
        done += 1
        if len(buffer) >= 4096:
            out.write(b"".join(buffer))
            buffer.clear()
    out.write(b"".join(buffer))
    if array:
        out.write(b"\n]\n")
    planted.update(last)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="a .json file gets a JSON array, anything else JSONL")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--records", type=int, help="number of records (default 100,000)")
    size.add_argument("--bytes", type=float, help="write records until the file is this large, e.g. 1e9")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    records = None if args.bytes else (args.records or 100_000)
    count, planted = write_foreign(args.out, records, int(args.bytes) if args.bytes else None, args.seed)
    print(f"wrote {count:,} records to {args.out} ({args.out.stat().st_size / 1e6:,.1f} MB)")
    print("planted: " + ", ".join(f"{k} {v}" for k, v in sorted(planted.items())))


def sample(seed: int = 2026, count: int = 5) -> list[dict[str, Any]]:
    """A few records to read by eye."""
    source = iter_records(seed)
    return [next(source)[0] for _ in range(count)]


if __name__ == "__main__":
    main()
